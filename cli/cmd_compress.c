/* fastlstm compress: plan (see cmd_plan.c), then write the decomposed model. */
#include "cli.h"

int cmd_compress(int argc, char **argv) { return cli_plan_main("compress", argc, argv, true); }
