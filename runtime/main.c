/* main.c - command line, exit codes. The only file that calls exit(). */
#include "log.h"
#include "replay.h"
#include "rt.h"
#include "testmode.h"

#include <errno.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef __linux__
#include <sys/prctl.h>
#endif
#include <sys/wait.h>
#include <unistd.h>

#ifndef BP_VERSION
#define BP_VERSION "0.1.0"
#endif
#ifndef BP_LIB_DIR
#define BP_LIB_DIR "/usr/local/share/bepipe-lua/lua"
#endif

enum { EXIT_OK = 0, EXIT_FAIL = 1, EXIT_USAGE = 2, EXIT_SUSPECT = 3 };

/* Dataflow/Beam options of the seed's deploy command: meaningless here, accepted so the command
 * runs unchanged. The boolean ones take no value. */
static const char *const dataflow_flags[] = {
    "--runner", "--region", "--job_name", "--temp_location", "--staging_location",
    "--setup_file", "--requirements_file", "--max_num_workers", "--num_workers",
    "--worker_machine_type", "--machine_type", "--service_account_email", "--network",
    "--subnetwork", "--experiments", "--autoscaling_algorithm", "--disk_size_gb",
    "--save_main_session", "--sdk_container_image", "--dataflow_service_options",
    "--worker_region", "--worker_zone", "--zone", "--labels", "--update",
};
static const char *const dataflow_bool_flags[] = {
    "--streaming", "--save_main_session", "--update", "--use_public_ips", "--no_use_public_ips",
};

static void
usage(FILE *f)
{
    size_t n;
    const struct bp_opt *opts = bp_config_options(&n);
    fprintf(f,
"usage: bepipe-lua [options] PIPELINE.lua      run the pipeline until SIGTERM/SIGINT (or end of --input)\n"
"       bepipe-lua --check PIPELINE.lua        load and compile everything and build the\n"
"                                              configuration as a run does (what the run\n"
"                                              refuses, this refuses), then exit (like nginx -t)\n"
"       bepipe-lua --check --online PIPELINE.lua   also the preflight: credentials give a token,\n"
"                                              the subscription, dataset, tables and bucket exist\n"
"       bepipe-lua test PIPELINE.lua EVENTS    run sample events (NDJSON, - = stdin) through\n"
"                                              route/validate/map and print rows and dead letters\n"
"       bepipe-lua replay PIPELINE.lua SOURCE...  read archived NDJSON (gs://BUCKET/PREFIX, or local\n"
"                                              files and folders) back into the tables\n"
"\n"
"options:\n"
"  --input PATH            read NDJSON events from PATH ('-' = stdin) instead of Pub/Sub\n"
"  --local-out DIR         write tables and the archive under DIR instead of BigQuery and GCS:\n"
"                          DIR/bigquery/<table>.ndjson and DIR/gcs/<bucket>/<prefix>/...\n"
"                          (a DIR that is not empty is refused unless --append)\n"
"  --append                let --local-out add to a folder that already holds a run\n"
"  --input_subscription S  --bq_project P  --bq_dataset D  --gcs_output_path gs://B/P  --project P\n"
"                          the seed's flags (Dataflow-only flags are accepted and ignored)\n"
"  --set KEY=VALUE         set any option below (overrides pipeline.lua)\n"
"  --workers N             run N processes sharing the subscription (Pub/Sub source only)\n"
"  --create-tables         create the dataset and missing tables from ddl/*.sql first (and\n"
"                          what --update-tables does)\n"
"  --update-tables         before pulling and on SIGHUP, add the DDL's new NULLABLE columns and\n"
"                          RECORD fields to the live tables (tables.patch); a dropped or retyped\n"
"                          column, or a new REQUIRED one, is an error naming it (exit 1)\n"
"  --online                with --check: run the preflight (see preflight_seconds) and exit\n"
"  --fixtures FILE         with --check: run FILE's sample events (fixtures or plain NDJSON)\n"
"                          and refuse rows their table's schema would refuse (a field the\n"
"                          table lacks, a wrong type); note columns no sample row sets\n"
"  --log-level LEVEL       error, warn, info (default) or debug\n"
"  --log-format FORMAT     text (default) or json: one object per line, time level component\n"
"                          msg, and the message's key=value words as fields\n"
"  --help, --version\n"
"\n"
"replay options (objects are picked by their folder hour, .../YYYY/MM/DD/HH/; errors/ only when\n"
"a SOURCE points into it; insertIds come from object, generation and line, so a second replay\n"
"of the same objects adds no row within BigQuery's de-duplication window):\n"
"  --since T, --until T    only folder hours overlapping [T, T2): RFC 3339 or YYYY-MM-DD[THH]\n"
"  --dry-run               list the objects and bytes that would be replayed; read nothing\n"
"  --resume FILE           record finished objects in FILE and skip those already there\n"
"  --max-rate N            at most N events/s (a backfill leaves the live pipeline its quota)\n"
"  --archive               write the raw archive again (off: the lines came from there)\n"
"  --progress SECONDS      progress line interval when stderr is not a terminal [5]\n"
"\n"
"signals: SIGHUP reloads pipeline.lua and every script (a broken one is reported and the old\n"
"         ones keep running); SIGTERM/SIGINT drain: stop pulling, flush every sink, wait for\n"
"         the writes (drain_seconds at most), ack what is stored, nack the rest, exit 0.\n"
"\n"
"environment: PUBSUB_EMULATOR_HOST, BIGQUERY_EMULATOR_HOST, STORAGE_EMULATOR_HOST (emulators),\n"
"         GOOGLE_APPLICATION_CREDENTIALS, GCE_METADATA_HOST (credentials), BEPIPE_LIB_DIR\n"
"         (the bepipe Lua library), BEPIPE_JIT_V=FILE (LuaJIT trace log)\n"
"\n"
"options (pipeline.lua keys; --set KEY=VALUE):\n");
    for (size_t i = 0; i < n; i++)
        fprintf(f, "  %-32s %s%s%s%s\n", opts[i].key, opts[i].help,
                opts[i].def ? " [" : "", opts[i].def ? opts[i].def : "", opts[i].def ? "]" : "");
}

static int
is_in(const char *flag, const char *const *list, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(flag, list[i]) == 0)
            return 1;
    return 0;
}

/* The folder holding the bepipe Lua library: $BEPIPE_LIB_DIR when set (an explicit choice, not
 * checked), else the first of these, relative to the binary's own folder, that has
 * bepipe/host.lua: when that folder is a bin/, ../share/bepipe-lua/lua (make
 * install, the Docker image) or ../share/lua/5.1/bepipe-lua/lua (a luarocks tree deploys the
 * rock's lua/ there); then scripts/ beside the binary or up to two folders above it (a source
 * checkout, build/asan/...); else BP_LIB_DIR, the PREFIX it was built for. Relative first so an
 * installed tree can move and a binary built for /usr/local runs from a luarocks tree or a
 * DESTDIR; only from a bin/ so a checkout's binary never picks up an installed library. */
static void
find_lib_dir(char *out, size_t outlen)
{
    static const char *const layouts[] = { /* the first two are the installed ones */
        "../share/bepipe-lua/lua", "../share/lua/5.1/bepipe-lua/lua", "scripts", "../scripts",
        "../../scripts",
    };
    const char *env = getenv("BEPIPE_LIB_DIR");
    if (env && *env) {
        snprintf(out, outlen, "%s", env);
        return;
    }
    char exe[4096];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    char *slash = n > 0 ? memrchr(exe, '/', (size_t)n) : NULL;
    size_t first = slash && slash - exe >= 4 && memcmp(slash - 4, "/bin", 4) == 0 ? 0 : 2;
    for (size_t i = first; slash && i < BP_ARRAY_LEN(layouts); i++) {
        char dir[4200], probe[4300];
        snprintf(dir, sizeof(dir), "%.*s/%s", (int)(slash - exe), exe, layouts[i]);
        snprintf(probe, sizeof(probe), "%.4200s/bepipe/host.lua", dir);
        if (access(probe, R_OK) != 0)
            continue;
        /* canonical, so messages and package.path show /usr/share/..., not bin/../share */
        char *real = realpath(dir, NULL);
        snprintf(out, outlen, "%.4000s", real ? real : dir);
        free(real);
        return;
    }
    snprintf(out, outlen, "%s", BP_LIB_DIR);
}

struct cli {
    const char *cmd;            /* "run", "check", "test" or "replay" */
    int online;                 /* --check --online: the preflight too */
    long worker_index;          /* --workers: this process's index (0 otherwise) */
    long workers;
    const char *pipeline;
    const char *events;
    const char *fixtures;       /* --check --fixtures FILE: sample rows checked against schemas */
    struct bp_kv kv[64];
    size_t nkv;
    struct bp_replay_opts replay;   /* replay's options (its flags are refused elsewhere) */
    int replay_flags;
};

static int
add_kv(struct cli *c, const char *key, const char *value)
{
    if (c->nkv == BP_ARRAY_LEN(c->kv)) {
        fprintf(stderr, "bepipe-lua: too many options\n");
        return -1;
    }
    c->kv[c->nkv].key = (char *)key;
    c->kv[c->nkv].value = (char *)value;
    c->nkv++;
    return 0;
}

/* Splits "--flag=value" or takes the next argument. Returns the value or NULL (error printed). */
static const char *
flag_value(int argc, char **argv, int *i, const char *arg, char *flag, size_t flaglen)
{
    const char *eq = strchr(arg, '=');
    if (eq) {
        snprintf(flag, flaglen, "%.*s", (int)(eq - arg), arg);
        return eq + 1;
    }
    snprintf(flag, flaglen, "%s", arg);
    if (*i + 1 >= argc) {
        fprintf(stderr, "bepipe-lua: %s needs a value\n", arg);
        return NULL;
    }
    return argv[++*i];
}

/* replay's options that take a value. Returns 1 when flag is one (*rc: 0, or -1 after printing
 * why), else 0. */
static int
replay_option(struct cli *c, const char *flag, const char *v, int *rc)
{
    struct bp_replay_opts *r = &c->replay;
    char *end;
    *rc = 0;
    if (strcmp(flag, "--since") == 0 || strcmp(flag, "--until") == 0) {
        int since = flag[2] == 's';
        if (bp_replay_parse_time(v, since ? &r->since : &r->until) != 0) {
            fprintf(stderr, "bepipe-lua: %s takes RFC 3339 or YYYY-MM-DD[THH], got '%s'\n", flag,
                    v);
            *rc = -1;
        }
        *(since ? &r->has_since : &r->has_until) = 1;
    } else if (strcmp(flag, "--resume") == 0) {
        r->resume = v;
    } else if (strcmp(flag, "--max-rate") == 0 || strcmp(flag, "--progress") == 0) {
        double x = strtod(v, &end);
        if (*end || !(x >= 0) || x > 1e9) {
            fprintf(stderr, "bepipe-lua: %s takes a number >= 0, got '%s'\n", flag, v);
            *rc = -1;
        }
        *(flag[2] == 'm' ? &r->max_rate : &r->progress_seconds) = x;
    } else {
        return 0;
    }
    c->replay_flags = 1;
    return 1;
}

/* One `--flag VALUE` / `--flag=VALUE` option that takes a value (flag without the value).
 * Returns 0, or -1 after printing why. */
static int
value_option(struct cli *c, const char *flag, char *v)
{
    int rc;
    const struct bp_opt *o = bp_config_find_flag(flag);
    if (o)
        return add_kv(c, o->key, v);
    if (strcmp(flag, "--set") == 0) {
        char *eq = strchr(v, '=');
        if (!eq) {
            fprintf(stderr, "bepipe-lua: --set takes KEY=VALUE, got '%s'\n", v);
            return -1;
        }
        *eq = '\0';
        return add_kv(c, v, eq + 1);
    }
    if (strcmp(flag, "--fixtures") == 0) {
        c->fixtures = v;
        return 0;
    }
    if (strcmp(flag, "--workers") == 0) {
        char *end;
        c->workers = strtol(v, &end, 10);
        if (*end || c->workers < 1 || c->workers > 64) {
            fprintf(stderr, "bepipe-lua: --workers takes 1..64, got '%s'\n", v);
            return -1;
        }
        return 0;
    }
    if (replay_option(c, flag, v, &rc))
        return rc;
    if (strcmp(flag, "--log-format") == 0) {
        if (bp_log_set_format(v) != 0) {
            fprintf(stderr, "bepipe-lua: --log-format takes text or json, got '%s'\n", v);
            return -1;
        }
        return 0;
    }
    if (strcmp(flag, "--log-level") == 0) {
        int lvl = bp_log_parse_level(v);
        if (lvl < 0) {
            fprintf(stderr, "bepipe-lua: unknown log level '%s'\n", v);
            return -1;
        }
        bp_log_set_level(lvl);
        return 0;
    }
    if (is_in(flag, dataflow_flags, BP_ARRAY_LEN(dataflow_flags))) {
        fprintf(stderr, "bepipe-lua: notice: %s is a Dataflow option; ignored\n", flag);
        return 0;
    }
    fprintf(stderr, "bepipe-lua: unknown option %s (see --help)\n", flag);
    return -1;
}

/* One option argv[*i] starting with "--" (may consume the next argument as its value).
 * Returns 0, or -1 after printing why. --help and --version exit here. */
static int
option(int argc, char **argv, int *i, struct cli *c)
{
    const char *a = argv[*i];
    char flag[128];
    if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
        usage(stdout);
        exit(EXIT_OK);
    }
    if (strcmp(a, "--version") == 0) {
        printf("bepipe-lua %s\n", BP_VERSION);
        exit(EXIT_OK);
    }
    if (strcmp(a, "--check") == 0) {
        c->cmd = "check";
        return 0;
    }
    if (strcmp(a, "--online") == 0) {
        c->online = 1;
        return 0;
    }
    if (strcmp(a, "--create-tables") == 0)
        return add_kv(c, "bigquery.create_tables", "1");
    if (strcmp(a, "--update-tables") == 0)
        return add_kv(c, "bigquery.update_tables", "1");
    if (strcmp(a, "--append") == 0)
        return add_kv(c, "local_out_append", "1");
    if (strcmp(a, "--dry-run") == 0 || strcmp(a, "--archive") == 0) {
        *(a[2] == 'd' ? &c->replay.dry_run : &c->replay.archive) = 1;
        c->replay_flags = 1;
        return 0;
    }
    size_t flen = strcspn(a, "=");
    snprintf(flag, sizeof(flag), "%.*s", (int)flen, a);
    if (is_in(flag, dataflow_bool_flags, BP_ARRAY_LEN(dataflow_bool_flags)) && !a[flen]) {
        fprintf(stderr, "bepipe-lua: notice: %s is a Dataflow option; ignored\n", flag);
        return 0;
    }
    /* flag_value's result points into argv, which is ours to edit (--set splits at '=') */
    char *v = (char *)flag_value(argc, argv, i, a, flag, sizeof(flag));
    return v ? value_option(c, flag, v) : -1;
}

/* `replay PIPELINE.lua SOURCE...` (pos[0] is "replay"). */
static int
replay_positionals(const char **pos, int npos, struct cli *c)
{
    struct bp_replay_opts *r = &c->replay;
    if (npos < 3) {
        fprintf(stderr, "bepipe-lua: usage: bepipe-lua replay PIPELINE.lua SOURCE... (see "
                "--help)\n");
        return -1;
    }
    if (r->has_since && r->has_until && r->until <= r->since) {
        fprintf(stderr, "bepipe-lua: --until must be later than --since\n");
        return -1;
    }
    c->cmd = "replay";
    c->pipeline = pos[1];
    r->sources = (char **)(pos + 2);
    r->nsources = (size_t)npos - 2;
    for (size_t i = 0; i < r->nsources; i++)
        r->remote |= strncmp(r->sources[i], "gs://", 5) == 0;
    /* a dry run only lists: no table is created, checked or written */
    if (r->dry_run && (add_kv(c, "preflight_seconds", "0") != 0 ||
                       add_kv(c, "bigquery.create_tables", "0") != 0 ||
                       add_kv(c, "local_out_append", "1") != 0))
        return -1;
    return 0;
}

/* The positional arguments: PIPELINE.lua, `test PIPELINE.lua EVENTS.ndjson` or `replay
 * PIPELINE.lua SOURCE...`. */
static int
positionals(const char **pos, int npos, struct cli *c)
{
    if (npos >= 1 && strcmp(pos[0], "replay") == 0)
        return replay_positionals(pos, npos, c);
    if (c->replay_flags) {
        fprintf(stderr, "bepipe-lua: --since, --until, --dry-run, --resume, --max-rate, "
                "--archive and --progress belong to the replay command (see --help)\n");
        return -1;
    }
    if (npos >= 1 && strcmp(pos[0], "test") == 0) {
        if (npos != 3) {
            fprintf(stderr, "bepipe-lua: usage: bepipe-lua test PIPELINE.lua EVENTS.ndjson\n");
            return -1;
        }
        c->cmd = "test";
        c->pipeline = pos[1];
        c->events = pos[2];
        return 0;
    }
    if (npos > 3) {
        fprintf(stderr, "bepipe-lua: unexpected argument '%s' (see --help)\n", pos[3]);
        return -1;
    }
    if (npos != 1) {
        fprintf(stderr, "bepipe-lua: %s (see --help)\n",
                npos ? "expected one PIPELINE.lua" : "missing PIPELINE.lua");
        return -1;
    }
    c->pipeline = pos[0];
    return 0;
}

static int
parse_args(int argc, char **argv, struct cli *c)
{
    static const char *positional[1024];   /* replay's SOURCEs; argv outlives them */
    int npos = 0;
    c->cmd = "run";
    c->replay.progress_seconds = 5;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strncmp(a, "--", 2) == 0 && a[2]) {
            if (option(argc, argv, &i, c) != 0)
                return -1;
        } else if (strcmp(a, "-h") == 0) {
            usage(stdout);
            exit(EXIT_OK);
        } else if (npos == (int)BP_ARRAY_LEN(positional)) {
            fprintf(stderr, "bepipe-lua: unexpected argument '%s' (see --help)\n", a);
            return -1;
        } else {
            positional[npos++] = a;
        }
    }
    return positionals(positional, npos, c);
}

/* `bepipe-lua replay`: the pipeline with the replay source, then its summary. Returns the exit
 * code. */
static int
replay(struct bp_rt *rt, struct cli *c)
{
    char err[4096];
    rt->replay = &c->replay;
    if (bp_rt_start(rt, err, sizeof(err)) != 0) {
        fprintf(stderr, "bepipe-lua: %s\n", err);
        return EXIT_FAIL;
    }
    int code = bp_rt_run(rt);
    if (!c->replay.dry_run) {
        bp_rt_log_summary(rt);
        bp_replay_summary(rt);
    }
    return code;
}

/* One pipeline process: load, start, run until drained. Returns the exit code. */
static int
run_one(struct cli *c, const char *lib_dir)
{
    char err[4096];
    struct bp_rt *rt = bp_rt_new(c->pipeline, lib_dir, c->kv, c->nkv, err, sizeof(err));
    if (!rt) {
        fprintf(stderr, "bepipe-lua: %s\n", err);
        return EXIT_FAIL;
    }
    rt->worker_index = (int)c->worker_index;
    rt->workers = (int)c->workers;
    int code = EXIT_OK;
    if (strcmp(c->cmd, "check") == 0 && c->online) {
        /* the preflight alone: credentials, subscription, dataset, tables, bucket */
        rt->preflight_only = 1;
        if (bp_rt_start(rt, err, sizeof(err)) != 0) {
            fprintf(stderr, "bepipe-lua: %s\n", err);
            code = EXIT_FAIL;
        } else {
            code = bp_rt_run(rt);
            if (code == EXIT_OK)
                printf("%s: ok online (source and destinations checked)\n", c->pipeline);
        }
    } else if (strcmp(c->cmd, "check") == 0) {
        size_t n;
        char dir[4096];
        bp_lua_host_routes(rt->host, &n);
        bp_rt_ddl_dir(rt, dir, sizeof(dir));
        /* the configuration as a run builds it, and what the run refuses (bp_rt_start) */
        if (bp_lua_host_check_ddl(rt->host, dir, err, sizeof(err)) != 0 ||
            bp_rt_check_config(rt, err, sizeof(err)) != 0) {
            fprintf(stderr, "bepipe-lua: %s: %s\n", c->pipeline, err);
            code = EXIT_FAIL;
        } else if (c->fixtures &&
                   bp_testmode_check_samples(rt->host, &rt->schemas, c->fixtures, stdout) != 0) {
            fprintf(stderr, "bepipe-lua: %s: sample rows from %s do not fit their tables\n",
                    c->pipeline, c->fixtures);
            code = EXIT_FAIL;
        } else {
            printf("%s: ok (%zu routes)\n", c->pipeline, n);
        }
    } else if (strcmp(c->cmd, "test") == 0) {
        code = bp_testmode_run(rt->host, &rt->schemas, c->events, stdout);
    } else if (strcmp(c->cmd, "replay") == 0) {
        code = replay(rt, c);
    } else if (bp_rt_start(rt, err, sizeof(err)) != 0) {
        fprintf(stderr, "bepipe-lua: %s\n", err);
        code = EXIT_FAIL;
    } else {
        bp_log(BP_LOG_INFO, "main", "bepipe-lua %s running %s (generation %d, pid %ld)",
               BP_VERSION, c->pipeline, rt->generation, (long)getpid());
        code = bp_rt_run(rt);
        bp_rt_log_summary(rt);
    }
    bp_rt_free(rt);
    return code;
}

/* In a new worker: have the kernel send SIGTERM (the drain) when the parent dies, however it
 * dies (SIGKILL, the OOM killer, a crash), so that a killed parent leaves no orphans pulling the
 * subscription beside its replacement's workers. The kernel's death signal costs nothing and
 * comes at once, where polling getppid() on a timer would add its period to every drain and a
 * watcher to every worker's loop. The parent is single-threaded (the signal follows the thread
 * that forked). A parent that died between fork() and prctl() sent nothing: getppid() no longer
 * names it, and the worker, which has pulled nothing yet, leaves at once. */
static void
die_with_parent(pid_t parent)
{
#ifdef __linux__
    if (prctl(PR_SET_PDEATHSIG, SIGTERM) != 0)
        fprintf(stderr, "bepipe-lua: prctl(PR_SET_PDEATHSIG): %s\n", strerror(errno));
#endif
    if (getppid() != parent) {
        fprintf(stderr, "bepipe-lua: worker %ld: the parent is gone; exiting\n", (long)getpid());
        _exit(EXIT_FAIL);
    }
}

/* Forks worker i (its /metrics listener moves to PORT + i). Returns its pid, or -1. */
static pid_t
spawn_worker(struct cli *c, const char *lib_dir, long i, const sigset_t *old)
{
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        fprintf(stderr, "bepipe-lua: fork: %s\n", strerror(errno));
        return -1;
    }
    if (pid == 0) {
        die_with_parent(parent);
        sigprocmask(SIG_SETMASK, old, NULL);
        c->worker_index = i;
        exit(run_one(c, lib_dir));
    }
    return pid;
}

/* --workers N: N processes, each a whole pipeline pulling the same subscription (Pub/Sub shares
 * the messages out, so they need no coordination). The parent only forwards SIGTERM, SIGINT and
 * SIGHUP to them and returns the worst exit code; a parent that dies any other way has its
 * workers drain (die_with_parent). */
static int
run_workers(struct cli *c, const char *lib_dir)
{
    pid_t pids[64];
    sigset_t set, old;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGCHLD);
    sigprocmask(SIG_BLOCK, &set, &old);
    for (long i = 0; i < c->workers; i++) {
        pids[i] = spawn_worker(c, lib_dir, i, &old);
        if (pids[i] < 0) {
            c->workers = i;
            break;
        }
    }
    int worst = EXIT_OK, stopping = 0;
    long alive = c->workers;
    while (alive > 0) {
        int sig;
        if (sigwait(&set, &sig) != 0)
            continue;
        if (sig != SIGCHLD) {
            stopping |= sig != SIGHUP;
            for (long i = 0; i < c->workers; i++)
                if (pids[i] > 0)
                    kill(pids[i], sig);
            continue;
        }
        int status;
        pid_t pid;
        while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
            int code = WIFEXITED(status) ? WEXITSTATUS(status) : EXIT_FAIL;
            long i = 0;
            while (i < c->workers && pids[i] != pid)
                i++;
            if (i < c->workers && code == EXIT_SUSPECT && !stopping) {
                /* a script ran away: the worker recorded its message as a suspect, and a new
                 * one dead-letters it on sight; the pool keeps its size */
                fprintf(stderr, "bepipe-lua: worker %ld stopped a runaway script; restarting it\n",
                        i);
                pids[i] = spawn_worker(c, lib_dir, i, &old);
                if (pids[i] > 0)
                    continue;
            }
            if (code > worst)
                worst = code;
            alive--;
            if (i < c->workers)
                pids[i] = 0;
        }
    }
    return worst;
}

int
main(int argc, char **argv)
{
    struct cli c;
    memset(&c, 0, sizeof(c));
    signal(SIGPIPE, SIG_IGN); /* a reader gone from stderr: log.c drops and counts, we go on */
    bp_alloc_json_init();
    if (parse_args(argc, argv, &c) != 0)
        return EXIT_USAGE;
    if (access(c.pipeline, R_OK) != 0) {
        fprintf(stderr, "bepipe-lua: cannot read %s: %s\n", c.pipeline, strerror(errno));
        return EXIT_FAIL;
    }
    /* Batches, replies and archive objects are buffers of 100 KB..64 MB allocated and freed over
     * and over; above glibc's default mmap threshold each one was a fresh mmap whose pages faulted
     * in as they were written (perf: ~18% of the cloud path in page faults under memmove). Keep
     * them on the heap and its freed memory for the next one. */
    mallopt(M_MMAP_THRESHOLD, 64 * 1024 * 1024);
    mallopt(M_TRIM_THRESHOLD, 128 * 1024 * 1024);
    char lib_dir[4096];
    find_lib_dir(lib_dir, sizeof(lib_dir));
    if (c.workers > 1 && strcmp(c.cmd, "run") == 0) {
        for (size_t i = 0; i < c.nkv; i++)
            if (strcmp(c.kv[i].key, "source.input") == 0) {
                fprintf(stderr, "bepipe-lua: --workers needs the Pub/Sub source, not --input\n");
                return EXIT_USAGE;
            }
        return run_workers(&c, lib_dir);
    }
    return run_one(&c, lib_dir);
}
