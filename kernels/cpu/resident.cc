#include "resident.h"

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#if defined(__linux__)
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>
#endif

namespace qwd {

#if defined(__linux__)

namespace {

constexpr size_t kHuge = size_t{2} << 20;
constexpr size_t kArena = size_t{64} << 20;  // a fresh arena's size; a larger copy gets one of its own size
constexpr size_t kAlign = 64;
constexpr size_t kSlice = size_t{8} << 20;  // copied, then dropped from the source, at a time

size_t round_up(size_t n, size_t to) { return (n + to - 1) / to * to; }

bool huge_pages_wanted() {
  const char* asked = std::getenv("QWDEPLOY_HUGE_PAGES");
  if (asked != nullptr && std::strcmp(asked, "0") == 0) return false;
  std::ifstream mode("/sys/kernel/mm/transparent_hugepage/enabled");
  std::string line;
  return std::getline(mode, line) && line.find("[never]") == std::string::npos;
}

// 2 MB-aligned anonymous memory that asks for huge pages: whole huge pages, so copies in it share them.
struct Arena {
  char* base = nullptr;
  size_t size = 0;
  explicit Arena(size_t bytes) {
    const size_t want = round_up(bytes, kHuge);
    void* raw = mmap(nullptr, want + kHuge, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (raw == MAP_FAILED) return;
    char* start = static_cast<char*>(raw);
    char* aligned = reinterpret_cast<char*>(round_up(reinterpret_cast<uintptr_t>(start), kHuge));
    if (aligned > start) munmap(start, aligned - start);
    if (aligned + want < start + want + kHuge) munmap(aligned + want, start + want + kHuge - (aligned + want));
    madvise(aligned, want, MADV_HUGEPAGE);
    base = aligned, size = want;
  }
  ~Arena() {
    if (base) munmap(base, size);
  }
  Arena(const Arena&) = delete;
  Arena& operator=(const Arena&) = delete;
};

// Whether every present page of [data, data + bytes) is still the file's own (pagemap bit 61), none a
// private copy someone wrote: only then may they be dropped and read again from the file.
bool pages_unmodified(const void* data, size_t bytes) {
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  const uintptr_t begin = reinterpret_cast<uintptr_t>(data) / page * page;
  const uintptr_t end = round_up(reinterpret_cast<uintptr_t>(data) + bytes, page);
  const int fd = open("/proc/self/pagemap", O_RDONLY);
  if (fd < 0) return false;
  std::vector<uint64_t> entries((end - begin) / page);
  const ssize_t want = static_cast<ssize_t>(entries.size() * sizeof(uint64_t));
  const bool read_all = pread(fd, entries.data(), want, static_cast<off_t>(begin / page * sizeof(uint64_t))) == want;
  close(fd);
  if (!read_all) return false;
  for (uint64_t e : entries)
    if (((e >> 63) & 1) && !((e >> 61) & 1)) return false;  // present, and anonymous: written since mapped
  return true;
}

// The file bytes behind [data, data + bytes): device, inode and offset in the file.
using Source = std::tuple<unsigned long long, unsigned long long, unsigned long long, unsigned long long>;

// [data, data + bytes)'s source where it lies in one private mapping of a file, as ONNX Runtime's
// external-data tensors do; none otherwise (a copy could not drop what it copied, and would hold the
// weights in memory a second time).
std::optional<Source> source_of(const void* data, size_t bytes) {
  const uintptr_t first = reinterpret_cast<uintptr_t>(data), last = first + bytes;
  std::ifstream maps("/proc/self/maps");
  std::string line;
  while (std::getline(maps, line)) {
    // start-end perms offset major:minor inode [path]
    unsigned long long start = 0, stop = 0, offset = 0, major = 0, minor = 0, inode = 0;
    char perms[8] = {};
    if (std::sscanf(line.c_str(), "%llx-%llx %7s %llx %llx:%llx %llu", &start, &stop, perms, &offset, &major, &minor,
                    &inode) != 7)
      continue;
    if (first < start || last > stop) continue;
    if (perms[3] != 'p' || inode == 0) return std::nullopt;
    return Source{major, minor, inode, offset + (first - start)};
  }
  return std::nullopt;
}

// Drops [data, data + bytes)'s whole pages from this process (pages_unmodified() said they come back from the file).
void drop(const void* data, size_t bytes) {
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  const uintptr_t begin = round_up(reinterpret_cast<uintptr_t>(data), page);
  const uintptr_t end = (reinterpret_cast<uintptr_t>(data) + bytes) / page * page;
  if (begin < end) madvise(reinterpret_cast<void*>(begin), end - begin, MADV_DONTNEED);
}

// A copy is found by the address and size it was made from and the file bytes behind them, so a model
// mapped later where a closed session's was never gets that session's copy.
using Key = std::tuple<const void*, size_t, Source>;

struct Registry {
  std::mutex mu;
  std::weak_ptr<Arena> open;  // the arena being filled; freed with its last copy
  size_t used = 0;
  std::map<Key, std::weak_ptr<const void>> copies;
};

Registry& registry() {
  static Registry* r = new Registry;  // never destroyed: kernels may outlive static destruction order
  return *r;
}

}  // namespace

std::shared_ptr<const void> resident_copy(const void* data, size_t bytes) {
  static const bool wanted = huge_pages_wanted();
  if (!wanted || data == nullptr || bytes == 0) return nullptr;
  const std::optional<Source> source = source_of(data, bytes);
  if (!source) return nullptr;
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mu);
  const Key key{data, bytes, *source};
  if (const auto it = r.copies.find(key); it != r.copies.end())
    if (auto held = it->second.lock()) return held;
  if (!pages_unmodified(data, bytes)) return nullptr;
  const size_t need = round_up(bytes, kAlign);
  std::shared_ptr<Arena> arena = r.open.lock();
  if (!arena || r.used + need > arena->size) {
    arena = std::make_shared<Arena>(std::max(kArena, need));
    if (!arena->base) return nullptr;
    r.open = arena, r.used = 0;
  }
  char* at = arena->base + r.used;
  r.used += need;
  // A slice at a time, each dropped once copied: the LM head's 68 MB never sit in memory twice.
  for (size_t done = 0; done < bytes; done += kSlice) {
    const size_t n = std::min(kSlice, bytes - done);
    std::memcpy(at + done, static_cast<const char*>(data) + done, n);
    drop(static_cast<const char*>(data) + done, n);
  }
  // Its own count, keeping the arena alive: the registry's entry expires with this copy's last holder,
  // not with the arena's, which other sessions' copies may keep.
  std::shared_ptr<const void> copy(at, [arena](const void*) {});
  for (auto it = r.copies.begin(); it != r.copies.end();)  // the copies of sessions since closed
    it = it->second.expired() ? r.copies.erase(it) : std::next(it);
  r.copies[key] = copy;
  return copy;
}

std::shared_ptr<const void> resident_held(const void* data, size_t bytes) {
  const std::optional<Source> source = source_of(data, bytes);
  if (!source) return nullptr;
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mu);
  const auto at = r.copies.find(Key{data, bytes, *source});
  return at == r.copies.end() ? nullptr : at->second.lock();
}

#else

std::shared_ptr<const void> resident_copy(const void*, size_t) { return nullptr; }
std::shared_ptr<const void> resident_held(const void*, size_t) { return nullptr; }

#endif

}  // namespace qwd
