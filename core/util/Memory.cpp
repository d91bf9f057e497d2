// peak_rss_mb (see Memory.h).
#include "core/util/Memory.h"

#include <sys/resource.h>

namespace loom {

double peak_rss_mb() {
  struct rusage ru {};
  getrusage(RUSAGE_SELF, &ru);
  return double(ru.ru_maxrss) / 1024.0;  // ru_maxrss is in KiB on Linux
}

}  // namespace loom
