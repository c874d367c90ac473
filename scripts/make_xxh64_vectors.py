# Reference XXH64 values for Tests/FormatsTests/ContentDigestTests.swift, from the `xxhash`
# package (PyPI, the reference C implementation). Data: byte i is (7·i + 3) mod 256.
#   pip install xxhash && python3 scripts/make_xxh64_vectors.py
import xxhash
for n, seed in [(0, 0), (1, 0), (3, 0), (4, 0), (7, 0), (8, 0), (15, 0), (31, 0), (32, 0), (33, 0),
                (63, 0), (100, 0), (1000, 0), (100, 12345)]:
    data = bytes((7 * i + 3) % 256 for i in range(n))
    print(f"({n}, {seed}, 0x{xxhash.xxh64(data, seed=seed).intdigest():016x}),")
