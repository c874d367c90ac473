import Foundation

// Plots as inline SVG strings, made by plain functions: the geometry (bar rectangles, line
// points) is computed by functions of their own so tests can check the coordinates.

/// The drawing area of a plot: the whole SVG and its margins (pixels).
public struct PlotFrame: Equatable {
    public var width = 560.0, height = 260.0
    public var left = 56.0, right = 12.0, top = 34.0, bottom = 56.0
    public init() {}
    public var plotWidth: Double { width - left - right }
    public var plotHeight: Double { height - top - bottom }
}

public struct Rect: Equatable {
    public var x, y, width, height: Double
    public init(x: Double, y: Double, width: Double, height: Double) { self.x = x; self.y = y; self.width = width; self.height = height }
}

/// One named series of a chart (nil: no value, nothing drawn).
public struct ChartSeries {
    public var name: String
    public var values: [Double?]
    public init(_ name: String, _ values: [Double?]) { self.name = name; self.values = values }
}

let palette = ["#c0392b", "#2471a3", "#229954", "#7d3c98", "#d68910", "#566573"]

/// Grouped bars: category c, series s. Each category takes an equal slot of the plot's width,
/// its bars fill the middle 80 % side by side; a bar's height is value / yMax of the plot's
/// height, from the baseline up.
public func barRects(series: [[Double?]], categories: Int, yMax: Double, frame: PlotFrame) -> [[Rect?]] {
    let slot = frame.plotWidth / Double(max(categories, 1))
    let barWidth = slot * 0.8 / Double(max(series.count, 1))
    let baseline = frame.top + frame.plotHeight
    return series.enumerated().map { s, values in
        (0..<categories).map { c in
            guard c < values.count, let v = values[c] else { return nil }
            let h = max(0, min(v, yMax)) / yMax * frame.plotHeight
            return Rect(x: frame.left + Double(c) * slot + slot * 0.1 + Double(s) * barWidth, y: baseline - h, width: barWidth, height: h)
        }
    }
}

/// Points of a line chart: x in xRange and y in yRange mapped onto the plot area (y grows up).
public func linePoints(_ points: [(x: Double, y: Double)], xRange: ClosedRange<Double>, yRange: ClosedRange<Double>,
                       frame: PlotFrame) -> [(x: Double, y: Double)] {
    let xSpan = xRange.upperBound - xRange.lowerBound, ySpan = yRange.upperBound - yRange.lowerBound
    return points.map { p in
        let fx = xSpan > 0 ? (p.x - xRange.lowerBound) / xSpan : 0.5
        let fy = ySpan > 0 ? (p.y - yRange.lowerBound) / ySpan : 0.5
        return (frame.left + fx * frame.plotWidth, frame.top + (1 - fy) * frame.plotHeight)
    }
}

/// A y range that shows the values: their min and max widened by 5 % of the span (or by 0.01
/// when all are equal).
public func paddedRange(_ values: [Double]) -> ClosedRange<Double> {
    guard let lo = values.min(), let hi = values.max() else { return 0...1 }
    let pad = hi > lo ? (hi - lo) * 0.05 : 0.01
    return (lo - pad)...(hi + pad)
}

/// The smallest of 1, 2, 2.5, 5 × 10^k at or above x (x > 0), so that axis ticks are round.
public func niceCeiling(_ x: Double) -> Double {
    guard x > 0 else { return 1 }
    let p = pow(10, (log10(x)).rounded(.down))
    for m in [1, 2, 2.5, 5, 10] where m * p >= x * (1 - 1e-12) { return m * p }
    return 10 * p
}

func f1(_ x: Double) -> String { String(format: "%.1f", x) }

/// "0.25", "12", "1.2k": tick and value labels.
public func shortNumber(_ x: Double) -> String {
    if abs(x) >= 10_000 { return String(format: "%.0fk", x / 1000) }
    if abs(x) >= 1000 { return String(format: "%.1fk", x / 1000) }
    if x == x.rounded() { return String(format: "%.0f", x) }
    return abs(x) >= 1 ? String(format: "%.1f", x) : String(format: "%.3g", x)
}

func svgOpen(_ frame: PlotFrame, title: String) -> String {
    """
    <svg xmlns="http://www.w3.org/2000/svg" width="\(f1(frame.width))" height="\(f1(frame.height))" viewBox="0 0 \(f1(frame.width)) \(f1(frame.height))" role="img" aria-label="\(escapeHTML(title))">
    <text x="\(f1(frame.width / 2))" y="18" text-anchor="middle" class="ptitle">\(escapeHTML(title))</text>

    """
}

/// Horizontal grid lines with labels at 5 evenly spaced values of yRange.
func yAxis(_ frame: PlotFrame, _ yRange: ClosedRange<Double>, format: (Double) -> String) -> String {
    var s = ""
    for i in 0...4 {
        let v = yRange.lowerBound + Double(i) / 4 * (yRange.upperBound - yRange.lowerBound)
        let y = frame.top + (1 - Double(i) / 4) * frame.plotHeight
        s += "<line x1=\"\(f1(frame.left))\" y1=\"\(f1(y))\" x2=\"\(f1(frame.width - frame.right))\" y2=\"\(f1(y))\" class=\"grid\"/>"
        s += "<text x=\"\(f1(frame.left - 6))\" y=\"\(f1(y + 4))\" text-anchor=\"end\" class=\"tick\">\(escapeHTML(format(v)))</text>\n"
    }
    return s
}

func legend(_ names: [String], _ frame: PlotFrame) -> String {
    guard names.count > 1 else { return "" }
    var s = "", x = frame.left
    for (i, n) in names.enumerated() {
        s += "<rect x=\"\(f1(x))\" y=\"\(f1(frame.height - 14))\" width=\"10\" height=\"10\" fill=\"\(palette[i % palette.count])\"/>"
        s += "<text x=\"\(f1(x + 14))\" y=\"\(f1(frame.height - 5))\" class=\"tick\">\(escapeHTML(n))</text>\n"
        x += 24 + Double(n.count) * 6.5
    }
    return s
}

/// A grouped bar chart as SVG: categories along x, a bar per series, the value over each bar.
public func barChartSVG(title: String, categories: [String], series: [ChartSeries], yMax: Double? = nil,
                        format: (Double) -> String = shortNumber, frame: PlotFrame = PlotFrame()) -> String {
    let top = yMax ?? niceCeiling(series.flatMap { $0.values.compactMap { $0 } }.max() ?? 1)
    let rects = barRects(series: series.map(\.values), categories: categories.count, yMax: top, frame: frame)
    var s = svgOpen(frame, title: title) + yAxis(frame, 0...top, format: format)
    let slot = frame.plotWidth / Double(max(categories.count, 1))
    let showValues = categories.count * series.count <= 16
    for (si, row) in rects.enumerated() {
        for (c, r) in row.enumerated() {
            guard let r, let v = series[si].values[c] else { continue }
            s += "<rect x=\"\(f1(r.x))\" y=\"\(f1(r.y))\" width=\"\(f1(r.width))\" height=\"\(f1(r.height))\" fill=\"\(palette[si % palette.count])\">"
            s += "<title>\(escapeHTML("\(series[si].name), \(categories[c]): \(format(v))"))</title></rect>"
            if showValues {
                s += "<text x=\"\(f1(r.x + r.width / 2))\" y=\"\(f1(r.y - 3))\" text-anchor=\"middle\" class=\"val\">\(escapeHTML(format(v)))</text>"
            }
            s += "\n"
        }
    }
    let every = max(1, Int((Double(categories.count) * 28 / frame.plotWidth).rounded(.up)))   // thin out crowded labels
    for (c, name) in categories.enumerated() where c % every == 0 {
        let x = frame.left + (Double(c) + 0.5) * slot
        s += "<text x=\"\(f1(x))\" y=\"\(f1(frame.top + frame.plotHeight + 16))\" text-anchor=\"middle\" class=\"tick\">\(escapeHTML(name))</text>\n"
    }
    return s + legend(series.map(\.name), frame) + "</svg>"
}

/// A stacked bar chart as SVG: one bar per category, one segment per series (bottom to top),
/// each segment's value inside it when it is tall enough. For shares that add up to 1.
public func stackedBarChartSVG(title: String, categories: [String], series: [ChartSeries], yMax: Double = 1,
                               format: (Double) -> String = { String(format: "%.0f %%", 100 * $0) }, frame: PlotFrame = PlotFrame()) -> String {
    var s = svgOpen(frame, title: title) + yAxis(frame, 0...yMax, format: format)
    let slot = frame.plotWidth / Double(max(categories.count, 1)), width = slot * 0.5
    for (c, name) in categories.enumerated() {
        let x = frame.left + (Double(c) + 0.25) * slot
        var base = 0.0
        for (si, series) in series.enumerated() {
            guard let v = series.values[c], v > 0 else { continue }
            let y0 = frame.top + frame.plotHeight * (1 - min(base + v, yMax) / yMax), h = frame.plotHeight * min(v, yMax - base) / yMax
            s += "<rect x=\"\(f1(x))\" y=\"\(f1(y0))\" width=\"\(f1(width))\" height=\"\(f1(h))\" fill=\"\(palette[si % palette.count])\">"
            s += "<title>\(escapeHTML("\(series.name), \(name): \(format(v))"))</title></rect>"
            if h >= 12 {
                s += "<text x=\"\(f1(x + width / 2))\" y=\"\(f1(y0 + h / 2 + 4))\" text-anchor=\"middle\" class=\"val\" fill=\"#fff\">\(escapeHTML(format(v)))</text>"
            }
            s += "\n"
            base += v
        }
        s += "<text x=\"\(f1(x + width / 2))\" y=\"\(f1(frame.top + frame.plotHeight + 16))\" text-anchor=\"middle\" class=\"tick\">\(escapeHTML(name))</text>\n"
    }
    return s + legend(series.map(\.name), frame) + "</svg>"
}

/// A line chart as SVG: one polyline with dots per series over x values (e.g. rounds).
public func lineChartSVG(title: String, xLabel: String, series: [(name: String, points: [(x: Double, y: Double)])],
                         yRange: ClosedRange<Double>? = nil, format: (Double) -> String = shortNumber,
                         frame: PlotFrame = PlotFrame()) -> String {
    let xs = series.flatMap { $0.points.map(\.x) }, ys = series.flatMap { $0.points.map(\.y) }
    let xRange = (xs.min() ?? 0)...(xs.max() ?? 1)
    let yr = yRange ?? paddedRange(ys)
    var s = svgOpen(frame, title: title) + yAxis(frame, yr, format: format)
    for (i, line) in series.enumerated() {
        let pts = linePoints(line.points, xRange: xRange, yRange: yr, frame: frame)
        let color = palette[i % palette.count]
        s += "<polyline fill=\"none\" stroke=\"\(color)\" stroke-width=\"2\" points=\"\(pts.map { "\(f1($0.x)),\(f1($0.y))" }.joined(separator: " "))\"/>\n"
        for (p, q) in zip(pts, line.points) {
            s += "<circle cx=\"\(f1(p.x))\" cy=\"\(f1(p.y))\" r=\"2.5\" fill=\"\(color)\"><title>\(escapeHTML("\(line.name), \(shortNumber(q.x)): \(format(q.y))"))</title></circle>"
        }
        s += "\n"
    }
    let distinct = Array(Set(xs)).sorted()
    let every = max(1, Int((Double(distinct.count) * 28 / frame.plotWidth).rounded(.up)))
    for (k, x) in distinct.enumerated() where k % every == 0 {
        let p = linePoints([(x, yr.lowerBound)], xRange: xRange, yRange: yr, frame: frame)[0]
        s += "<text x=\"\(f1(p.x))\" y=\"\(f1(frame.top + frame.plotHeight + 16))\" text-anchor=\"middle\" class=\"tick\">\(escapeHTML(shortNumber(x)))</text>"
    }
    s += "<text x=\"\(f1(frame.left + frame.plotWidth / 2))\" y=\"\(f1(frame.top + frame.plotHeight + 32))\" text-anchor=\"middle\" class=\"tick\">\(escapeHTML(xLabel))</text>\n"
    return s + legend(series.map(\.name), frame) + "</svg>"
}
