// Reading /proc files of other processes, which may exit at any moment.
#ifndef TOKENRAIL_COMMON_PROC_FILE_H_
#define TOKENRAIL_COMMON_PROC_FILE_H_

#include <string>

namespace tokenrail {

// The contents of `path` (a small /proc file such as /proc/PID/stat), or an
// empty string when it cannot be opened or read: the process it describes
// may exit between listing /proc and reading, and read(2) then fails with
// ESRCH. Never throws (std::ifstream with istreambuf_iterator does, there).
std::string ReadProcFile(const std::string& path);

}  // namespace tokenrail

#endif  // TOKENRAIL_COMMON_PROC_FILE_H_
