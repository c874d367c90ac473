import Tensor

extension QuantMatrix {
    /// A 2-D (or higher: trailing dimensions are folded into rows) tensor of a GGUF file.
    public init(gguf: GGUFFile, tensor t: GGUFTensorInfo) throws {
        guard t.offset >= 0, t.byteCount >= 0, t.offset <= gguf.file.count, t.byteCount <= gguf.file.count - t.offset else {
            throw DequantizeError("tensor '\(t.name)' lies outside its file")
        }
        do {
            try self.init(type: t.type, base: gguf.bytes(t), byteCount: t.byteCount, rows: t.rows, columns: t.columns, owner: gguf)
        } catch let e as DequantizeError {
            throw DequantizeError("tensor '\(t.name)': \(e.message)")
        }
    }

    public init(gguf: GGUFFile, name: String) throws {
        guard let t = gguf.tensor(name) else { throw DequantizeError("no tensor '\(name)' in \(gguf.path)") }
        try self.init(gguf: gguf, tensor: t)
    }
}
