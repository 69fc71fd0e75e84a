/* The library's .npy reading and writing is public API: include/fastlstm/io.h. This header stays so
 * that modules keep one include for it. */
#ifndef FL_NPY_H
#define FL_NPY_H

#include "fastlstm/io.h"

#endif
