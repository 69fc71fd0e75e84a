/* Optimisers over the model's flat parameter block: SGD with momentum and Adam (as torch.optim),
 * global gradient-norm clipping. Frozen tensors are skipped; alignment padding stays zero. */
#include "train_internal.h"

#include <math.h>

double fl_optim_grad_norm(const fl_trainer *t) {
    const fl_model *m = t->m;
    double s = 0;
    for (size_t k = 0; k < m->n_tensors; k++) {
        if (!t->trainable[k]) continue;
        const float *g = t->grad->params + m->tensors[k].offset;
        for (size_t i = 0; i < m->tensors[k].count; i++) s += (double)g[i] * g[i];
    }
    return sqrt(s);
}

/* p -= lr * step(grad * grad_scale + weight_decay * p), tensor by tensor. */
void fl_optim_update(fl_trainer *t, float grad_scale) {
    fl_model *m = t->m;
    const fl_train_opts *o = &t->o;
    const float lr = (float)t->lr, wd = o->weight_decay;
    if (o->optim == FL_OPTIM_ADAM) {
        t->adam_t++;
        const double bc1 = 1.0 - pow(o->beta1, (double)t->adam_t);
        const double bc2 = 1.0 - pow(o->beta2, (double)t->adam_t);
        const float step = (float)(lr / bc1), b1 = o->beta1, b2 = o->beta2;
        const float inv_sqrt_bc2 = (float)(1.0 / sqrt(bc2));
        for (size_t k = 0; k < m->n_tensors; k++) {
            if (!t->trainable[k]) continue;
            const size_t off = m->tensors[k].offset, n = m->tensors[k].count;
            float *p = m->params + off, *mm = t->s1 + off, *vv = t->s2 + off;
            const float *g = t->grad->params + off;
            for (size_t i = 0; i < n; i++) {
                float gi = g[i] * grad_scale + wd * p[i];
                mm[i] = b1 * mm[i] + (1.0f - b1) * gi;
                vv[i] = b2 * vv[i] + (1.0f - b2) * gi * gi;
                p[i] -= step * mm[i] / (sqrtf(vv[i]) * inv_sqrt_bc2 + o->eps);
            }
        }
    } else {
        const float mu = o->momentum;
        for (size_t k = 0; k < m->n_tensors; k++) {
            if (!t->trainable[k]) continue;
            const size_t off = m->tensors[k].offset, n = m->tensors[k].count;
            float *p = m->params + off, *buf = t->s1 + off;
            const float *g = t->grad->params + off;
            for (size_t i = 0; i < n; i++) {
                float gi = g[i] * grad_scale + wd * p[i];
                if (mu != 0.0f) {
                    buf[i] = mu * buf[i] + gi;
                    gi = buf[i];
                }
                p[i] -= lr * gi;
            }
        }
    }
}
