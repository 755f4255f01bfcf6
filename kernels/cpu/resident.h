// Constant weights copied once into memory that asks Linux for transparent huge pages. Decode streams
// every weight once per token; ONNX Runtime maps each external-data tensor as its own private file
// mapping in 4 KB pages, which Linux will not back with huge pages (MADV_COLLAPSE refuses a writable
// mapping), and a 0.5B int4 decode ran 5-6% faster from huge pages (AMD EPYC family 26, median ratios
// of 6 and 8 interleaved runs through ONNX Runtime). Copies are packed into 2 MB-aligned arenas, so
// small tensors share huge pages too. Only weights in a private file mapping are copied, and their
// pages leave this process as they are copied (the content stays in the file and the page cache):
// resident memory holds the weights once, and at no point twice.
#pragma once

#include <cstddef>
#include <memory>

namespace qwd {

// A copy of [data, data + bytes), alive while a returned pointer is held: every holder of the same data
// shares one copy. Null where there is nothing to gain or it would cost memory: huge pages off (`never`,
// or QWDEPLOY_HUGE_PAGES=0), data not in a private file mapping whose pages can be dropped, a system
// other than Linux, or memory refused.
std::shared_ptr<const void> resident_copy(const void* data, size_t bytes);

// The copy of [data, data + bytes) someone holds, or null: for readers of a few rows at a time, which
// should not hold a whole table in memory for themselves.
std::shared_ptr<const void> resident_held(const void* data, size_t bytes);

}  // namespace qwd
