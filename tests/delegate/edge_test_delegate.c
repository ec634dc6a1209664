/*
 * A minimal TFLite external delegate, in plain C, for edge-runtime's tests.
 *
 * It claims float32 ADD, MUL and FULLY_CONNECTED nodes (the set is chosen with the
 * "ops" option, e.g. "ADD,MUL") and runs them itself. Exported counters let a test
 * prove that the delegate really ran:
 *   edge_delegate_created, edge_delegate_nodes_claimed, edge_delegate_partitions,
 *   edge_delegate_invocations, edge_delegate_ops_run.
 * Option "fail_create" = "1" makes creation fail with a message (tests the fallback).
 *
 * Route: the classic function-pointer TfLiteDelegate, exported through
 * tflite_plugin_create_delegate / tflite_plugin_destroy_delegate. No TFLite headers
 * ship in the Python wheels, so the few layouts used here are declared by hand
 * from tensorflow/lite/core/c/common.h (LP64). Links only against libc and libm.
 *
 * Build: gcc -shared -fPIC -O2 -o libedge_test_delegate.so edge_test_delegate.c -lm
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <stdbool.h>

typedef enum { kTfLiteOk = 0, kTfLiteError = 1 } TfLiteStatus;
enum { kTfLiteFloat32 = 1 };
enum { kTfLiteMmapRo = 1 };
enum { kBuiltinAdd = 0, kBuiltinFullyConnected = 9, kBuiltinMul = 18 };
enum { kActNone = 0, kActRelu = 1, kActReluN1To1 = 2, kActRelu6 = 3 };

typedef struct TfLiteIntArray { int size; int data[]; } TfLiteIntArray;

typedef struct { float scale; int32_t zero_point; } TfLiteQuantizationParams;
typedef struct { int type; void *params; } TfLiteQuantization;

/* Declared in full: context->tensors is indexed as an array. */
typedef struct TfLiteTensor {
  int type;
  union { void *data; float *f; } data;
  TfLiteIntArray *dims;
  TfLiteQuantizationParams params;
  int allocation_type;
  size_t bytes;
  const void *allocation;
  const char *name;
  struct TfLiteDelegate *delegate;
  int buffer_handle;
  bool data_is_stale;
  bool is_variable;
  TfLiteQuantization quantization;
  void *sparsity;
  const TfLiteIntArray *dims_signature;
} TfLiteTensor;
_Static_assert(sizeof(TfLiteTensor) == 112, "TfLiteTensor must be 112 bytes on LP64");

/* Prefix of TfLiteNode up to the fields used. */
typedef struct TfLiteNode {
  TfLiteIntArray *inputs;
  TfLiteIntArray *outputs;
  TfLiteIntArray *intermediates;
  TfLiteIntArray *temporaries;
  void *user_data;
  void *builtin_data;
} TfLiteNode;

struct TfLiteContext;
struct TfLiteDelegate;

typedef struct TfLiteRegistration {
  void *(*init)(struct TfLiteContext *context, const char *buffer, size_t length);
  void (*free)(struct TfLiteContext *context, void *buffer);
  TfLiteStatus (*prepare)(struct TfLiteContext *context, TfLiteNode *node);
  TfLiteStatus (*invoke)(struct TfLiteContext *context, TfLiteNode *node);
  const char *(*profiling_string)(const struct TfLiteContext *context, const TfLiteNode *node);
  int32_t builtin_code;
  const char *custom_name;
  int version;
  void *registration_external; /* must be NULL */
  void *async_kernel;
  uint64_t inplace_operator;
  void *reserved[4];           /* zeroed slots for fields added later */
} TfLiteRegistration;

/* Prefix of TfLiteContext up to ReplaceNodeSubsetsWithDelegateKernels. */
typedef struct TfLiteContext {
  size_t tensors_size;
  TfLiteStatus (*GetExecutionPlan)(struct TfLiteContext *context, TfLiteIntArray **execution_plan);
  TfLiteTensor *tensors;
  void *impl_;
  void *ResizeTensor;
  void (*ReportError)(struct TfLiteContext *, const char *msg, ...);
  void *AddTensors;
  TfLiteStatus (*GetNodeAndRegistration)(struct TfLiteContext *, int node_index, TfLiteNode **node,
                                         TfLiteRegistration **registration);
  TfLiteStatus (*ReplaceNodeSubsetsWithDelegateKernels)(struct TfLiteContext *, TfLiteRegistration registration,
                                                        const TfLiteIntArray *nodes_to_replace,
                                                        struct TfLiteDelegate *delegate);
} TfLiteContext;

typedef struct TfLiteDelegate {
  void *data_;
  TfLiteStatus (*Prepare)(TfLiteContext *context, struct TfLiteDelegate *delegate);
  void *CopyFromBufferHandle;
  void *CopyToBufferHandle;
  void *FreeBufferHandle;
  int64_t flags;
  void *opaque_delegate_builder; /* must be NULL */
  void *reserved[4];
} TfLiteDelegate;

typedef struct {
  struct TfLiteDelegate *delegate;
  TfLiteIntArray *nodes_to_replace;
  TfLiteIntArray *input_tensors;
  TfLiteIntArray *output_tensors;
} TfLiteDelegateParams;

/* ---- counters, read by the tests with ctypes ---------------------------- */
int64_t edge_delegate_created = 0;
int64_t edge_delegate_nodes_claimed = 0;
int64_t edge_delegate_partitions = 0;
int64_t edge_delegate_invocations = 0;
int64_t edge_delegate_ops_run = 0;

/* ---- delegate state ------------------------------------------------------ */
typedef struct {
  bool claim_add, claim_mul, claim_fc;
} DelegateOptions;

typedef struct {
  int op;          /* builtin code */
  int activation;
  int in[3];       /* tensor indices; in[2] = bias or -1 */
  int out;
} KernelOp;

typedef struct {
  int n_ops;
  KernelOp *ops;
  int n_owned;
  int *owned_tensor;   /* tensors produced and consumed inside the partition */
  float **owned_buf;   /* buffers this delegate owns for them */
  size_t *owned_len;
} Kernel;

static size_t num_elements(const TfLiteTensor *t) {
  size_t n = 1;
  if (!t->dims) return 0;
  for (int i = 0; i < t->dims->size; i++) n *= (size_t)(t->dims->data[i] < 0 ? 0 : t->dims->data[i]);
  return n;
}

static bool in_array(const TfLiteIntArray *a, int v) {
  for (int i = 0; a && i < a->size; i++) if (a->data[i] == v) return true;
  return false;
}

static int first_int(const void *p) { return p ? *(const int *)p : kActNone; }

static bool supported(TfLiteContext *ctx, const DelegateOptions *o, TfLiteNode *node, TfLiteRegistration *reg) {
  int code = reg->builtin_code;
  if (!((code == kBuiltinAdd && o->claim_add) || (code == kBuiltinMul && o->claim_mul) ||
        (code == kBuiltinFullyConnected && o->claim_fc)))
    return false;
  if (!node->outputs || node->outputs->size != 1 || !node->inputs) return false;
  int act = first_int(node->builtin_data);
  if (act != kActNone && act != kActRelu && act != kActReluN1To1 && act != kActRelu6) return false;
  for (int i = 0; i < node->inputs->size; i++) {
    int t = node->inputs->data[i];
    if (t < 0) continue;
    if ((size_t)t >= ctx->tensors_size || ctx->tensors[t].type != kTfLiteFloat32) return false;
  }
  const TfLiteTensor *out = &ctx->tensors[node->outputs->data[0]];
  if (out->type != kTfLiteFloat32) return false;
  if (code == kBuiltinAdd || code == kBuiltinMul) {
    if (node->inputs->size != 2) return false;
    size_t n = num_elements(out);
    /* No broadcasting: both inputs have the output's element count. */
    return num_elements(&ctx->tensors[node->inputs->data[0]]) == n &&
           num_elements(&ctx->tensors[node->inputs->data[1]]) == n;
  }
  /* FULLY_CONNECTED: constant 2-D weights [units, depth], optional constant bias. */
  if (node->inputs->size < 2) return false;
  const TfLiteTensor *w = &ctx->tensors[node->inputs->data[1]];
  if (!w->dims || w->dims->size != 2 || w->allocation_type != kTfLiteMmapRo) return false;
  if (node->inputs->size > 2 && node->inputs->data[2] >= 0) {
    const TfLiteTensor *b = &ctx->tensors[node->inputs->data[2]];
    if (b->allocation_type != kTfLiteMmapRo || num_elements(b) != (size_t)w->dims->data[0]) return false;
  }
  const TfLiteTensor *x = &ctx->tensors[node->inputs->data[0]];
  size_t depth = (size_t)w->dims->data[1];
  return depth > 0 && num_elements(x) % depth == 0 &&
         num_elements(out) == num_elements(x) / depth * (size_t)w->dims->data[0];
}

static float activate(float v, int act) {
  switch (act) {
    case kActRelu: return v < 0.f ? 0.f : v;
    case kActReluN1To1: return v < -1.f ? -1.f : (v > 1.f ? 1.f : v);
    case kActRelu6: return v < 0.f ? 0.f : (v > 6.f ? 6.f : v);
    default: return v;
  }
}

/* ---- the partition kernel ----------------------------------------------- */
static void kernel_free(TfLiteContext *ctx, void *buffer) {
  (void)ctx;
  Kernel *k = (Kernel *)buffer;
  if (!k) return;
  for (int i = 0; i < k->n_owned; i++) free(k->owned_buf[i]);
  free(k->owned_buf); free(k->owned_len); free(k->owned_tensor); free(k->ops); free(k);
}

static void *kernel_init(TfLiteContext *ctx, const char *buffer, size_t length) {
  (void)length;
  const TfLiteDelegateParams *params = (const TfLiteDelegateParams *)buffer;
  int n = params->nodes_to_replace->size;
  Kernel *k = (Kernel *)calloc(1, sizeof(Kernel));
  if (!k) return NULL;
  k->ops = (KernelOp *)calloc((size_t)n, sizeof(KernelOp));
  k->owned_tensor = (int *)calloc((size_t)n, sizeof(int));
  k->owned_buf = (float **)calloc((size_t)n, sizeof(float *));
  k->owned_len = (size_t *)calloc((size_t)n, sizeof(size_t));
  if (!k->ops || !k->owned_tensor || !k->owned_buf || !k->owned_len) { kernel_free(ctx, k); return NULL; }
  for (int i = 0; i < n; i++) {
    TfLiteNode *node; TfLiteRegistration *reg;
    if (ctx->GetNodeAndRegistration(ctx, params->nodes_to_replace->data[i], &node, &reg) != kTfLiteOk) {
      kernel_free(ctx, k); return NULL;
    }
    KernelOp *op = &k->ops[k->n_ops++];
    op->op = reg->builtin_code;
    op->activation = first_int(node->builtin_data);
    op->in[0] = node->inputs->data[0];
    op->in[1] = node->inputs->size > 1 ? node->inputs->data[1] : -1;
    op->in[2] = node->inputs->size > 2 ? node->inputs->data[2] : -1;
    op->out = node->outputs->data[0];
    /* An output used only inside the partition may get no arena memory: own it. */
    if (!in_array(params->output_tensors, op->out)) k->owned_tensor[k->n_owned++] = op->out;
  }
  edge_delegate_partitions++;
  return k;
}

static TfLiteStatus kernel_prepare(TfLiteContext *ctx, TfLiteNode *node) {
  Kernel *k = (Kernel *)node->user_data;
  if (!k) return kTfLiteError;
  for (int i = 0; i < k->n_owned; i++) {
    size_t need = num_elements(&ctx->tensors[k->owned_tensor[i]]);
    if (need > k->owned_len[i]) {
      float *p = (float *)realloc(k->owned_buf[i], need * sizeof(float));
      if (!p) return kTfLiteError;
      k->owned_buf[i] = p;
      k->owned_len[i] = need;
    }
  }
  return kTfLiteOk;
}

static float *tensor_ptr(TfLiteContext *ctx, Kernel *k, int t) {
  for (int i = 0; i < k->n_owned; i++) if (k->owned_tensor[i] == t) return k->owned_buf[i];
  return ctx->tensors[t].data.f;
}

static TfLiteStatus kernel_invoke(TfLiteContext *ctx, TfLiteNode *node) {
  Kernel *k = (Kernel *)node->user_data;
  for (int i = 0; i < k->n_ops; i++) {
    const KernelOp *op = &k->ops[i];
    float *out = tensor_ptr(ctx, k, op->out);
    const float *a = tensor_ptr(ctx, k, op->in[0]);
    const float *b = tensor_ptr(ctx, k, op->in[1]);
    if (!out || !a || !b) { ctx->ReportError(ctx, "edge_test_delegate: a tensor has no data"); return kTfLiteError; }
    size_t n = num_elements(&ctx->tensors[op->out]);
    if (op->op == kBuiltinAdd) {
      for (size_t j = 0; j < n; j++) out[j] = activate(a[j] + b[j], op->activation);
    } else if (op->op == kBuiltinMul) {
      for (size_t j = 0; j < n; j++) out[j] = activate(a[j] * b[j], op->activation);
    } else {
      const TfLiteTensor *w = &ctx->tensors[op->in[1]];
      int units = w->dims->data[0], depth = w->dims->data[1];
      const float *bias = op->in[2] >= 0 ? ctx->tensors[op->in[2]].data.f : NULL;
      size_t rows = n / (size_t)units;
      for (size_t r = 0; r < rows; r++) {
        for (int u = 0; u < units; u++) {
          float acc = bias ? bias[u] : 0.f;
          for (int d = 0; d < depth; d++) acc += a[r * (size_t)depth + d] * b[(size_t)u * depth + d];
          out[r * (size_t)units + u] = activate(acc, op->activation);
        }
      }
    }
    edge_delegate_ops_run++;
  }
  edge_delegate_invocations++;
  return kTfLiteOk;
}

/* ---- the delegate ------------------------------------------------------- */
static TfLiteStatus delegate_prepare(TfLiteContext *ctx, TfLiteDelegate *delegate) {
  const DelegateOptions *o = (const DelegateOptions *)delegate->data_;
  TfLiteIntArray *plan;
  if (ctx->GetExecutionPlan(ctx, &plan) != kTfLiteOk) return kTfLiteError;
  /* Copy the plan: GetNodeAndRegistration may invalidate it. */
  int n = plan->size;
  int *nodes = (int *)malloc(sizeof(int) * (size_t)(n > 0 ? n : 1));
  TfLiteIntArray *claim = (TfLiteIntArray *)malloc(sizeof(TfLiteIntArray) + sizeof(int) * (size_t)(n > 0 ? n : 1));
  if (!nodes || !claim) { free(nodes); free(claim); return kTfLiteError; }
  memcpy(nodes, plan->data, sizeof(int) * (size_t)n);
  claim->size = 0;
  for (int i = 0; i < n; i++) {
    TfLiteNode *node; TfLiteRegistration *reg;
    if (ctx->GetNodeAndRegistration(ctx, nodes[i], &node, &reg) != kTfLiteOk) continue;
    if (supported(ctx, o, node, reg)) claim->data[claim->size++] = nodes[i];
  }
  TfLiteStatus status = kTfLiteOk;
  if (claim->size > 0) {
    TfLiteRegistration r;
    memset(&r, 0, sizeof(r));
    r.init = kernel_init;
    r.free = kernel_free;
    r.prepare = kernel_prepare;
    r.invoke = kernel_invoke;
    r.builtin_code = 32; /* CUSTOM */
    r.custom_name = "EdgeTestDelegate";
    r.version = 1;
    status = ctx->ReplaceNodeSubsetsWithDelegateKernels(ctx, r, claim, delegate);
    if (status == kTfLiteOk) edge_delegate_nodes_claimed += claim->size;
  }
  free(nodes);
  free(claim);
  return status;
}

static bool has_op(const char *list, const char *name) {
  size_t len = strlen(name);
  const char *p = list;
  while (p && *p) {
    const char *end = strchr(p, ',');
    size_t n = end ? (size_t)(end - p) : strlen(p);
    if (n == len && strncmp(p, name, len) == 0) return true;
    p = end ? end + 1 : NULL;
  }
  return false;
}

TfLiteDelegate *tflite_plugin_create_delegate(char **keys, char **values, int num_options,
                                              void (*report_error)(const char *)) {
  DelegateOptions *o = (DelegateOptions *)calloc(1, sizeof(DelegateOptions));
  TfLiteDelegate *d = (TfLiteDelegate *)calloc(1, sizeof(TfLiteDelegate));
  if (!o || !d) { free(o); free(d); return NULL; }
  const char *ops = "ADD,MUL,FULLY_CONNECTED";
  for (int i = 0; i < num_options; i++) {
    if (strcmp(keys[i], "ops") == 0) {
      ops = values[i];
    } else if (strcmp(keys[i], "fail_create") == 0 && strcmp(values[i], "1") == 0) {
      if (report_error) report_error("edge_test_delegate: creation refused (fail_create=1)");
      free(o); free(d);
      return NULL;
    } else {
      if (report_error) report_error("edge_test_delegate: unknown option");
      free(o); free(d);
      return NULL;
    }
  }
  o->claim_add = has_op(ops, "ADD");
  o->claim_mul = has_op(ops, "MUL");
  o->claim_fc = has_op(ops, "FULLY_CONNECTED");
  d->data_ = o;
  d->Prepare = delegate_prepare;
  d->flags = 0;
  d->opaque_delegate_builder = NULL;
  edge_delegate_created++;
  return d;
}

void tflite_plugin_destroy_delegate(TfLiteDelegate *d) {
  if (!d) return;
  free(d->data_);
  free(d);
}
