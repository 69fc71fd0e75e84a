/* Small public accessors: method and head names, the model's tokenizer. */
#include "internal.h"

const char *fl_method_name(fl_method method) {
    switch (method) {
    case FL_METHOD_DENSE: return "dense";
    case FL_METHOD_SVD: return "svd";
    case FL_METHOD_CP: return "cp";
    }
    return "unknown";
}

const char *fl_head_name(fl_head_kind head) {
    switch (head) {
    case FL_HEAD_NONE: return "none";
    case FL_HEAD_PER_STEP: return "per_step";
    case FL_HEAD_LAST_STEP: return "last_step";
    }
    return "unknown";
}

const char *fl_model_tokenizer(const fl_model *m) { return m ? m->tokenizer : NULL; }
