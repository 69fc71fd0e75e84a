/* fastlstm finetune: continue training a saved model (see cli_train_main in cmd_train.c). */
#include "cli.h"

int cmd_finetune(int argc, char **argv) { return cli_train_main("finetune", argc, argv, true); }
