// Process start-up for tokenrail binaries: parses abseil flags once and applies
// the common ones (--v log verbosity, --log_prefix). Components then receive
// their typed Options structs built from flags in main(); leaf code never reads
// flags or the environment.
#ifndef TOKENRAIL_COMMON_INIT_H_
#define TOKENRAIL_COMMON_INIT_H_

#include <vector>

namespace tokenrail {

// Returns the positional arguments (argv[0] first). Exits with a message on a
// bad flag.
std::vector<char*> InitMain(int argc, char** argv, const char* usage);

}  // namespace tokenrail

#endif  // TOKENRAIL_COMMON_INIT_H_
