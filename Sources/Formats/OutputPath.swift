import Foundation

/// What a command will write at an output path.
public enum OutputKind {
    case file      // a file written atomically (a GGUF, a patch, a JSON file)
    case folder    // a folder of files (an HF model, a fine-tune's adapter)
}

/// Checks an output path before any work, so that a long run never ends in an error about
/// where to put its result, and never overwrites one of its own inputs: the path is not
/// empty, no part of the way to it is a file, it is not something else than `kind` already,
/// its folder is writable, and it is none of `inputs` (nor inside an input folder, nor a
/// folder holding an input), compared after resolving symbolic links and by file identity
/// (so a hard link or another spelling of an input is caught too). Missing folders on the
/// way are created, as writing would. `option` names the flag in messages.
public func checkOutputPath(_ out: String, kind: OutputKind, inputs: [String], option: String = "--out") throws {
    guard !out.isEmpty else { throw FormatError(option, "the output path is empty") }
    let fm = FileManager.default
    let url = URL(fileURLWithPath: out).standardizedFileURL
    var st = stat()
    if lstat(url.path, &st) == 0 {
        let type = st.st_mode & S_IFMT
        switch kind {
        case .file where type == S_IFDIR:
            throw FormatError(out, "the output (\(option)) is an existing folder; give a file path")
        case .folder where type != S_IFDIR && type != S_IFLNK:
            throw FormatError(out, "the output (\(option)) exists and is not a folder")
        default:
            if type != S_IFREG && type != S_IFDIR && type != S_IFLNK {
                throw FormatError(out, "the output (\(option)) exists and is not a regular file or folder")
            }
        }
    }
    // The nearest existing ancestor must be a folder we can write in.
    var parent = url.deletingLastPathComponent()
    var missing: [URL] = []
    while lstat(parent.path, &st) != 0 && parent.path != "/" {
        missing.append(parent)
        parent = parent.deletingLastPathComponent()
    }
    var isDir: ObjCBool = false
    guard fm.fileExists(atPath: parent.path, isDirectory: &isDir), isDir.boolValue else {
        throw FormatError(out, "cannot write the output (\(option)): \(parent.path) is a file, not a folder")
    }
    guard access(parent.path, W_OK) == 0 else {
        throw FormatError(out, "cannot write the output (\(option)): the folder \(parent.path) is not writable")
    }
    let target = resolvedPath(url)
    for input in inputs where !input.isEmpty {
        let i = resolvedPath(URL(fileURLWithPath: input).standardizedFileURL)
        if target == i || sameFile(out, input) {
            throw FormatError(out, "the output (\(option)) is the input \(input); choose another path")
        }
        if target.hasPrefix(i + "/") {
            throw FormatError(out, "the output (\(option)) is inside the input folder \(input); choose another path")
        }
        if i.hasPrefix(target + "/") {
            throw FormatError(out, "the output (\(option)) would hold the input \(input); choose another path")
        }
    }
    for m in missing.reversed() {
        do { try fm.createDirectory(at: m, withIntermediateDirectories: false) } catch {
            throw FormatError(out, "cannot create the folder \(m.path) for the output (\(option))")
        }
    }
}

/// The absolute path with every symbolic link of its existing part resolved.
private func resolvedPath(_ url: URL) -> String {
    if let r = realpath(url.path, nil) { defer { free(r) }; return String(cString: r) }
    // Not there yet: resolve its folder, keep the name.
    let parent = url.deletingLastPathComponent()
    guard parent.path != url.path else { return url.path }
    return resolvedPath(parent) + "/" + url.lastPathComponent
}

/// Both paths exist and are one file (same device and inode: hard links included).
private func sameFile(_ a: String, _ b: String) -> Bool {
    var sa = stat(), sb = stat()
    guard stat(a, &sa) == 0, stat(b, &sb) == 0 else { return false }
    return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino
}

/// Where an output is written before it is renamed into place: `.NAME.tmp-PID-RANDOM` beside
/// it (hidden, in the same folder so the rename is atomic, and named by its process so that
/// `removeStaleTemporaries` can tell a killed run's leftovers from a running one's).
public func temporaryPath(for path: String) -> String {
    let url = URL(fileURLWithPath: path).standardizedFileURL
    return url.deletingLastPathComponent().path + "/.\(url.lastPathComponent).tmp-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
}

/// Removes what an interrupted `writeAtomically` (or folder write) left behind: temporary
/// files and folders (`temporaryPath`) whose process is gone, beside `path`
/// (`.NAME` of that path only) or, with `everything`, every such temporary in the folder
/// `path`. A kill during a long write otherwise leaves a file as large as the output.
public func removeStaleTemporaries(of path: String, everything: Bool = false) {
    let url = URL(fileURLWithPath: path).standardizedFileURL
    let folder = everything ? url.path : url.deletingLastPathComponent().path
    guard let names = try? FileManager.default.contentsOfDirectory(atPath: folder) else { return }
    for name in names where name.hasPrefix(".") {
        guard let mark = name.range(of: ".tmp-", options: .backwards) else { continue }
        if !everything && name[name.index(after: name.startIndex)..<mark.lowerBound] != url.lastPathComponent { continue }
        let parts = name[mark.upperBound...].split(separator: "-")
        guard parts.count == 2, let pid = Int32(parts[0]), UInt32(parts[1]) != nil else { continue }
        if pid != getpid() && kill(pid, 0) != 0 && errno == ESRCH {
            try? FileManager.default.removeItem(atPath: folder + "/" + name)
        }
    }
}
