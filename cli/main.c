/* fastlstm command-line tool: placeholder entry until the subcommands land. */
#include "fastlstm/fastlstm.h"
#include <stdio.h>
int main(int argc, char **argv) { printf("fastlstm %s\n", fl_version()); return 0; }
