// Process memory figures for reports and benchmarks: the peak resident set size of this process
// (what the kernel charged it at its worst moment: tensors, caches, code, libraries, heaps).
//   double mb = peak_rss_mb();   // e.g. logged by `loom train` per rank at the end of a run
#pragma once

namespace loom {

// Peak resident set size of this process so far, in MiB (getrusage ru_maxrss).
double peak_rss_mb();

}  // namespace loom
