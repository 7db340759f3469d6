/* A custom backup strategy in C: an uncompressed tar archive of the PVC per run on the backup
 * claim, with a sha256 file that the Job checks after writing and that restore and verification
 * check again before reading. Bindings come from `wit-bindgen c` (build.sh generates them from
 * the operator's WIT); no WASI is used, so the component needs no adapter.
 *
 * Ownership follows the canonical ABI: a request is ours to free, and everything returned is
 * heap-allocated, since the host's post-return frees it. */
#include <stdlib.h>
#include <string.h>

#include "backup_strategy.h"

typedef backup_strategy_string_t str_t;
typedef backup_strategy_types_job_plan_t job_t;
typedef backup_strategy_types_plan_error_t error_t_;

static const char BACKUP[] =
    "set -eu\n"
    "cd /backup\n"
    "rm -f \"$ARTIFACT.partial\"\n"
    "tar -cf \"$ARTIFACT.partial\" -C /data .\n"
    "sum=$(sha256sum \"$ARTIFACT.partial\" | cut -d' ' -f1)\n"
    "echo \"$sum  $ARTIFACT\" > \"$ARTIFACT.sha256\"\n"
    "mv \"$ARTIFACT.partial\" \"$ARTIFACT\"\n"
    "sha256sum -c -s \"$ARTIFACT.sha256\"\n"
    "printf '{\"sha256\":\"%s\",\"verified\":true}' \"$sum\" > /dev/termination-log\n";
static const char RESTORE[] =
    "set -eu\n"
    "cd /backup && sha256sum -c -s \"$ARTIFACT.sha256\"\n"
    "find /data -mindepth 1 -maxdepth 1 ! -name lost+found -exec rm -rf {} +\n"
    "tar -xf \"/backup/$ARTIFACT\" -C /data\n";
static const char PRUNE[] = "rm -f \"/backup/$ARTIFACT\" \"/backup/$ARTIFACT.sha256\"\n";
static const char VERIFY[] =
    "cd /backup && sha256sum -c -s \"$ARTIFACT.sha256\" || "
    "{ printf '{\"verified\":false,\"message\":\"the archive does not match its sha256\"}' > /dev/termination-log; exit 1; }\n";

static void set(str_t *out, const char *s) { backup_strategy_string_dup(out, s); }

static void copy(str_t *out, const str_t *s) { backup_strategy_string_dup_n(out, (const char *)s->ptr, s->len); }


static bool fail(error_t_ *err, uint8_t tag, const char *message) {
  err->tag = tag;
  set(&err->val.failed, message); /* every string case of the variant shares this slot */
  return false;
}

/* An artifact of this strategy: `<run name>.tar`, lower-case letters, digits and dashes. */
static bool is_artifact(const str_t *a) {
  const char suffix[] = ".tar";
  size_t n = strlen(suffix);
  if (a->len <= n || memcmp(a->ptr + a->len - n, suffix, n) != 0) return false;
  for (size_t i = 0; i < a->len - n; i++) {
    uint8_t c = a->ptr[i];
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-')) return false;
  }
  return true;
}

static void add_mount(job_t *job, const char *volume, const char *path, bool read_only) {
  backup_strategy_types_mount_t *m = &job->mounts.ptr[job->mounts.len++];
  set(&m->volume, volume);
  set(&m->path, path);
  m->read_only = read_only;
}

/* A Job running `script` in the policy's image with ARTIFACT set; mounts added by the caller. */
static void shell_job(job_t *job, const backup_strategy_types_policy_info_t *policy, const char *script,
                      const str_t *artifact) {
  memset(job, 0, sizeof *job);
  copy(&job->image, &policy->backup_image);
  job->command.ptr = malloc(3 * sizeof(str_t));
  job->command.len = 3;
  set(&job->command.ptr[0], "/bin/sh");
  set(&job->command.ptr[1], "-c");
  set(&job->command.ptr[2], script);
  job->env.ptr = malloc(sizeof(backup_strategy_types_env_var_t));
  job->env.len = 1;
  set(&job->env.ptr[0].name, "ARTIFACT");
  job->env.ptr[0].source.tag = BACKUP_STRATEGY_TYPES_ENV_SOURCE_VALUE;
  copy(&job->env.ptr[0].source.val.value, artifact);
  job->mounts.ptr = malloc(2 * sizeof(backup_strategy_types_mount_t));
  /* Files on a PVC usually belong to root: read and write them as root (no other privilege). */
  job->privileges.run_as_root = true;
  copy(&job->artifact_location, artifact);
  job->verification.tag = BACKUP_STRATEGY_TYPES_VERIFICATION_NONE;
}

static bool claim_only(const backup_strategy_types_policy_info_t *policy, error_t_ *err) {
  if (policy->destination.kind.tag != BACKUP_STRATEGY_TYPES_DESTINATION_KIND_CLAIM)
    return fail(err, BACKUP_STRATEGY_TYPES_PLAN_ERROR_UNSUPPORTED_DESTINATION, "c-tar writes to claims only");
  return true;
}

void exports_backup_strategy_strategy_describe(exports_backup_strategy_strategy_description_t *ret) {
  set(&ret->name, "c-tar");
  set(&ret->version, "0.1.0");
  set(&ret->summary, "an uncompressed tar archive per run with a checked sha256, written in C");
  ret->actions.ptr = malloc(4 * sizeof(backup_strategy_types_action_t));
  ret->actions.len = 4;
  ret->actions.ptr[0] = BACKUP_STRATEGY_TYPES_ACTION_BACKUP;
  ret->actions.ptr[1] = BACKUP_STRATEGY_TYPES_ACTION_RESTORE;
  ret->actions.ptr[2] = BACKUP_STRATEGY_TYPES_ACTION_PRUNE;
  ret->actions.ptr[3] = BACKUP_STRATEGY_TYPES_ACTION_VERIFY;
  set(&ret->config_schema, "{\"type\":\"object\",\"additionalProperties\":false}");
}

bool exports_backup_strategy_strategy_validate_config(str_t *config, error_t_ *err) {
  /* No config: "{}" (any spacing inside the braces). */
  size_t i = 0, j = config->len;
  while (i < j && (config->ptr[i] == ' ' || config->ptr[i] == '\n')) i++;
  while (j > i && (config->ptr[j - 1] == ' ' || config->ptr[j - 1] == '\n')) j--;
  bool empty = j - i >= 2 && config->ptr[i] == '{' && config->ptr[j - 1] == '}';
  for (size_t k = i + 1; empty && k + 1 < j; k++) empty = config->ptr[k] == ' ' || config->ptr[k] == '\n';
  backup_strategy_string_free(config);
  if (!empty) return fail(err, BACKUP_STRATEGY_TYPES_PLAN_ERROR_INVALID_CONFIG, "c-tar takes no config: use {}");
  return true;
}

bool exports_backup_strategy_strategy_plan_backup(exports_backup_strategy_strategy_backup_request_t *request,
                                                 exports_backup_strategy_strategy_plan_t *ret, error_t_ *err) {
  bool ok = claim_only(&request->policy, err);
  if (ok && request->pvc.volume_mode != BACKUP_STRATEGY_TYPES_VOLUME_MODE_FILESYSTEM)
    ok = fail(err, BACKUP_STRATEGY_TYPES_PLAN_ERROR_UNSUPPORTED_VOLUME, "c-tar archives files: the PVC is a block device");
  if (ok) {
    const str_t *run = &request->policy.run_name;
    str_t artifact;
    artifact.len = run->len + 4;
    artifact.ptr = malloc(artifact.len);
    memcpy(artifact.ptr, run->ptr, run->len);
    memcpy(artifact.ptr + run->len, ".tar", 4);
    ret->tag = BACKUP_STRATEGY_TYPES_PLAN_JOB;
    shell_job(&ret->val.job, &request->policy, BACKUP, &artifact);
    add_mount(&ret->val.job, "data", "/data", true);
    add_mount(&ret->val.job, "backup", "/backup", false);
    ret->val.job.verification.tag = BACKUP_STRATEGY_TYPES_VERIFICATION_CHECKED_BY_JOB;
    set(&ret->val.job.verification.val.checked_by_job, "sha256sum -c <artifact>.sha256");
    backup_strategy_string_free(&artifact);
  }
  backup_strategy_types_backup_request_free(request);
  return ok;
}

/* Restore, prune and verify: the same checks, then a Job over one artifact. */
static bool artifact_plan(backup_strategy_types_artifact_request_t *request, const char *script, bool data,
                          bool backup_writable, backup_strategy_types_plan_t *ret, error_t_ *err) {
  bool ok = claim_only(&request->policy, err);
  if (ok && !is_artifact(&request->artifact)) ok = fail(err, BACKUP_STRATEGY_TYPES_PLAN_ERROR_FAILED, "not an artifact of c-tar");
  if (ok) {
    ret->tag = BACKUP_STRATEGY_TYPES_PLAN_JOB;
    shell_job(&ret->val.job, &request->policy, script, &request->artifact);
    if (data) add_mount(&ret->val.job, "data", "/data", false);
    add_mount(&ret->val.job, "backup", "/backup", !backup_writable);
  }
  backup_strategy_types_artifact_request_free(request);
  return ok;
}

bool exports_backup_strategy_strategy_plan_restore(exports_backup_strategy_strategy_artifact_request_t *request,
                                                  exports_backup_strategy_strategy_plan_t *ret, error_t_ *err) {
  return artifact_plan(request, RESTORE, true, false, ret, err);
}

bool exports_backup_strategy_strategy_plan_prune(exports_backup_strategy_strategy_artifact_request_t *request,
                                                exports_backup_strategy_strategy_plan_t *ret, error_t_ *err) {
  return artifact_plan(request, PRUNE, false, true, ret, err);
}

bool exports_backup_strategy_strategy_plan_verify(exports_backup_strategy_strategy_artifact_request_t *request,
                                                 exports_backup_strategy_strategy_plan_t *ret, error_t_ *err) {
  return artifact_plan(request, VERIFY, false, false, ret, err);
}
