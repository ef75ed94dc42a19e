// SPDX-License-Identifier: GPL-2.0
/* sluice_trace.c - sluice-trace: the loader and reports of sluice's BPF tracing (libbpf CO-RE skeletons). */
#include <argp.h>
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>

#include "sluice_trace.h"
#include "sluice_trace.skel.h"
#include "trace_report.h"

#define MAX_BINARIES	16
#define SYS_MODULE	"/sys/module/sluice_blk"
#define VMLINUX_BTF	"/sys/kernel/btf/vmlinux"
#define MODULE_BTF	"/sys/kernel/btf/sluice_blk"

enum command { CMD_NONE, CMD_EXITS, CMD_LATENCY, CMD_SNOOP };
enum attach_mode { ATTACH_AUTO, ATTACH_TP_BTF, ATTACH_RAW_TP };
#define DP_KERNEL	(1u << SLUICE_TRACE_DP_KERNEL)
#define DP_USER		(1u << SLUICE_TRACE_DP_USER)

enum {
	OPT_PLOT = 0x100,
	OPT_BINARY,
	OPT_DATAPLANE,
	OPT_ATTACH,
};

static struct env {
	enum command cmd;
	pid_t pid;
	int duration;
	int json;
	char **cmd_argv;
	int interval;
	int count;
	int nargs;
	struct trace_split split;
	int ms;
	const char *plot;
	const char *binaries[MAX_BINARIES];
	int nbinaries;
	unsigned int dataplanes;	/* asked for explicitly; 0: whatever is there */
	enum attach_mode attach;
	int verbose;
	int latency_opts;		/* -D, -Q, -F or --plot given */
	int blk_opts;			/* -m, --binary, --dataplane or --attach given */
} env;

const char *argp_program_version = "sluice-trace 0.2";
static const char doc[] =
"sluice-trace: where sluice's time goes.\n"
"\n"
"USAGE: sluice-trace exits [-p PID] [-d SECONDS] [--json] [-- COMMAND...]\n"
"       sluice-trace latency [-DQFm] [--json] [--plot FILE.svg] [-p PID]\n"
"                [--binary PATH]... [--dataplane D] [--attach A]\n"
"                [INTERVAL [COUNT]] [-- COMMAND...]\n"
"       sluice-trace snoop [-m] [--json] [-p PID] [--binary PATH]...\n"
"                [--dataplane D] [--attach A] [-- COMMAND...]\n"
"\n"
"  exits    count KVM exits to userspace by reason, for one process: every\n"
"           exit listed is a KVM_RUN that returned to the VMM (queue\n"
"           notifications on ioeventfds never appear here).\n"
"  latency  log2 histograms of virtio-blk request latency by dataplane:\n"
"           kernel (sluice_blk.ko, tracepoint sluice_blk:req_done), user (the\n"
"           block layer, USDT sluice:blk_req_start/done) and kernel->user\n"
"           fallback (qcow2 requests sluice_blk.ko forwarded to userspace,\n"
"           from the same tracepoint). Printed every INTERVAL seconds\n"
"           (COUNT times), else once at the end: Ctrl-C, or COMMAND or -p's\n"
"           process exited.\n"
"  snoop    a line per completed request: time, disk, queue, op, sector,\n"
"           bytes, latency, dataplane, fallback, status.\n"
"\n"
"The user dataplane is traced in -p's process, in every process running a\n"
"--binary, in COMMAND, and by default in the sluice binaries found beside\n"
"sluice-trace. -p does not filter the kernel dataplane (its requests run in\n"
"the module's workers): -D names its disks.\n"
"\n"
"EXAMPLES:\n"
"    sluice-trace exits -- sluice --kernel bzImage ...   # run, trace a VMM\n"
"    sluice-trace exits -p 1234 -d 10        # trace pid 1234 for 10 s\n"
"    sluice-trace latency                    # both dataplanes until Ctrl-C\n"
"    sluice-trace latency -D -Q 1 10         # per disk and queue, 1 s, 10x\n"
"    sluice-trace latency -F -m --plot l.svg # per op, in ms, and a picture\n"
"    sluice-trace latency --json -p 1234     # a VMM's user dataplane, JSON\n"
"    sluice-trace latency -F -- sluice-io -c 'read 0 1M' disk.img\n"
"    sluice-trace snoop --dataplane kernel   # each kernel-dataplane request\n";

static const struct argp_option opts[] = {
	{ "pid", 'p', "PID", 0, "Trace this process only (exits; the user dataplane)", 0 },
	{ "duration", 'd', "SECONDS", 0, "exits: stop after SECONDS (with -p; default: until Ctrl-C)", 0 },
	{ "json", 'j', NULL, 0, "Print JSON (one object per report, or per request for snoop)", 0 },
	{ "disk", 'D', NULL, 0, "latency: a histogram per disk", 0 },
	{ "queue", 'Q', NULL, 0, "latency: a histogram per queue", 0 },
	{ "op", 'F', NULL, 0, "latency: a histogram per request type (read, write, flush...)", 0 },
	{ "milliseconds", 'm', NULL, 0, "Latency in msecs (default: usecs)", 0 },
	{ "plot", OPT_PLOT, "FILE.svg", 0, "latency: also draw the histograms into FILE.svg", 0 },
	{ "binary", OPT_BINARY, "PATH", 0,
	  "Trace the user dataplane in every process running PATH (repeatable)", 0 },
	{ "dataplane", OPT_DATAPLANE, "kernel|user", 0,
	  "Trace only this dataplane; fail if it cannot be traced", 0 },
	{ "attach", OPT_ATTACH, "tp_btf|raw_tp", 0,
	  "How to attach to the module's tracepoint (default: tp_btf when sluice_blk has BTF)", 0 },
	{ "verbose", 'v', NULL, 0, "Show libbpf's debug output", 0 },
	{ NULL, 'h', NULL, OPTION_HIDDEN, "Show the full help", 0 },
	{},
};

static int parse_int(const char *arg, int *out)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(arg, &end, 10);
	if (errno || end == arg || *end || v <= 0 || v > INT_MAX)
		return -EINVAL;
	*out = (int)v;
	return 0;
}

static error_t parse_arg(int key, char *arg, struct argp_state *state)
{
	int v;

	if (key == 'D' || key == 'Q' || key == 'F' || key == OPT_PLOT)
		env.latency_opts = 1;
	if (key == 'm' || key == OPT_BINARY || key == OPT_DATAPLANE || key == OPT_ATTACH)
		env.blk_opts = 1;
	switch (key) {
	case 'h':
		argp_state_help(state, stderr, ARGP_HELP_STD_HELP);
		break;
	case 'p':
		if (parse_int(arg, &v))
			argp_error(state, "invalid PID '%s'", arg);
		env.pid = v;
		break;
	case 'd':
		if (parse_int(arg, &env.duration))
			argp_error(state, "invalid duration '%s'", arg);
		break;
	case 'j':
		env.json = 1;
		break;
	case 'D':
		env.split.disk = 1;
		break;
	case 'Q':
		env.split.queue = 1;
		break;
	case 'F':
		env.split.op = 1;
		break;
	case 'm':
		env.ms = 1;
		break;
	case 'v':
		env.verbose = 1;
		break;
	case OPT_PLOT:
		if (!*arg)
			argp_error(state, "--plot needs a file name");
		env.plot = arg;
		break;
	case OPT_BINARY:
		if (env.nbinaries == MAX_BINARIES)
			argp_error(state, "at most %d --binary", MAX_BINARIES);
		env.binaries[env.nbinaries++] = arg;
		break;
	case OPT_DATAPLANE:
		if (!strcmp(arg, "kernel"))
			env.dataplanes = DP_KERNEL;
		else if (!strcmp(arg, "user"))
			env.dataplanes = DP_USER;
		else if (!strcmp(arg, "all"))
			env.dataplanes = DP_KERNEL | DP_USER;
		else
			argp_error(state, "invalid dataplane '%s' (kernel, user or all)", arg);
		break;
	case OPT_ATTACH:
		if (!strcmp(arg, "tp_btf"))
			env.attach = ATTACH_TP_BTF;
		else if (!strcmp(arg, "raw_tp"))
			env.attach = ATTACH_RAW_TP;
		else if (!strcmp(arg, "auto"))
			env.attach = ATTACH_AUTO;
		else
			argp_error(state, "invalid attach mode '%s' (tp_btf, raw_tp or auto)", arg);
		break;
	case ARGP_KEY_ARG:
		if (state->arg_num == 0) {
			if (!strcmp(arg, "exits"))
				env.cmd = CMD_EXITS;
			else if (!strcmp(arg, "latency"))
				env.cmd = CMD_LATENCY;
			else if (!strcmp(arg, "snoop"))
				env.cmd = CMD_SNOOP;
			else
				argp_error(state, "unknown command '%s'", arg);
		} else if (env.cmd == CMD_EXITS) {
			if (env.cmd_argv)
				argp_error(state, "a COMMAND both before and after --");
			env.cmd_argv = &state->argv[state->next - 1];
			state->next = state->argc;
		} else if (env.cmd == CMD_LATENCY && env.nargs < 2) {
			if (parse_int(arg, env.nargs ? &env.count : &env.interval))
				argp_error(state, "invalid %s '%s'", env.nargs ? "count" : "interval", arg);
			env.nargs++;
		} else {
			argp_error(state, "unexpected argument '%s' (a COMMAND goes after --)", arg);
		}
		break;
	case ARGP_KEY_END:
		if (state->arg_num == 0)
			argp_error(state, "a command is required (exits, latency or snoop)");
		if (env.pid && env.cmd_argv)
			argp_error(state, "-p and a COMMAND exclude each other");
		if (env.cmd != CMD_EXITS && env.duration)
			argp_error(state, "-d is for exits (latency takes INTERVAL [COUNT])");
		if (env.cmd == CMD_EXITS && (env.latency_opts || env.blk_opts))
			argp_error(state, "exits takes only -p, -d and --json");
		if (env.cmd == CMD_SNOOP && env.latency_opts)
			argp_error(state, "-D, -Q, -F and --plot are for latency");
		break;
	default:
		return ARGP_ERR_UNKNOWN;
	}
	return 0;
}

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
	stop = 1;
}

static int libbpf_quiet;

static int libbpf_print(enum libbpf_print_level level, const char *fmt, va_list args)
{
	if (level == LIBBPF_DEBUG && !env.verbose)
		return 0;
	if (libbpf_quiet && !env.verbose)
		return 0;
	return vfprintf(stderr, fmt, args);
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/*
 * The programs are CO-RE (vmlinux.h types: the USDT helpers read struct
 * pt_regs), so libbpf needs the kernel's BTF: /sys/kernel/btf/vmlinux, or a
 * vmlinux file with BTF where libbpf looks (/boot, /lib/modules, debug dirs).
 */
static int check_kernel_btf(void)
{
	struct btf *btf;

	libbpf_quiet = 1;
	btf = btf__load_vmlinux_btf();
	libbpf_quiet = 0;
	if (!btf) {
		fprintf(stderr, "sluice-trace: this kernel has no BTF (%s missing, and no vmlinux with BTF "
			"under /boot or /lib/modules): sluice-trace needs CONFIG_DEBUG_INFO_BTF=y\n",
			VMLINUX_BTF);
		return -1;
	}
	btf__free(btf);
	return 0;
}

/* Load with libbpf's own messages off (unless -v): one clear line instead. */
static int load_skel(struct sluice_trace_bpf *skel)
{
	int err;

	libbpf_quiet = 1;
	err = sluice_trace_bpf__load(skel);
	libbpf_quiet = 0;
	if (!err)
		return 0;
	if (err == -EPERM || err == -EACCES)
		fprintf(stderr, "sluice-trace: permission denied loading the BPF programs: run as root "
			"(or with CAP_BPF, CAP_PERFMON and CAP_SYS_RESOURCE)\n");
	else
		fprintf(stderr, "sluice-trace: cannot load the BPF programs: %s%s\n", strerror(-err),
			env.verbose ? "" : " (-v shows libbpf's log)");
	return err;
}

/* ---- a traced COMMAND: forked at once, exec'd once the probes are attached ---- */

struct child {
	pid_t pid;
	int go;		/* write end of the pipe the child waits on */
	int status;
	int exited;
};

static int child_spawn(struct child *c, char **argv)
{
	int go[2];

	memset(c, 0, sizeof(*c));
	c->go = -1;
	if (pipe(go)) {
		perror("sluice-trace: pipe");
		return -1;
	}
	c->pid = fork();
	if (c->pid < 0) {
		perror("sluice-trace: fork");
		close(go[0]);
		close(go[1]);
		return -1;
	}
	if (c->pid == 0) {
		char ch;

		close(go[1]);
		if (read(go[0], &ch, 1) != 1)
			_exit(127);
		close(go[0]);
		execvp(argv[0], argv);
		fprintf(stderr, "sluice-trace: cannot run %s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	close(go[0]);
	c->go = go[1];
	return 0;
}

static int child_start(struct child *c)
{
	int ret = write(c->go, "g", 1) == 1 ? 0 : -1;

	if (ret)
		perror("sluice-trace: start COMMAND");
	close(c->go);
	c->go = -1;
	return ret;
}

/* Non-blocking unless @block; true once the child has exited. */
static int child_reap(struct child *c, int block)
{
	pid_t r;

	if (!c->pid || c->exited)
		return c->exited;
	do {
		r = waitpid(c->pid, &c->status, block ? 0 : WNOHANG);
	} while (r < 0 && errno == EINTR);
	if (r == c->pid || (r < 0 && errno == ECHILD))
		c->exited = 1;
	return c->exited;
}

static void child_kill(struct child *c)
{
	if (c->go >= 0)
		close(c->go);	/* the child exits without running COMMAND */
	c->go = -1;
	if (c->pid > 0 && !c->exited) {
		kill(c->pid, SIGKILL);
		child_reap(c, 1);
	}
}

/* The exit status sluice-trace passes on for COMMAND. */
static int child_status(const struct child *c)
{
	if (!c->pid || !c->exited)
		return 0;
	if (WIFEXITED(c->status))
		return WEXITSTATUS(c->status);
	if (WIFSIGNALED(c->status))
		return 128 + WTERMSIG(c->status);
	return 1;
}

/* Is @pid gone (or a zombie)? */
static int pid_gone(pid_t pid)
{
	char path[64], buf[512], *p;
	FILE *f;
	int gone = 1;

	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	f = fopen(path, "r");
	if (!f)
		return 1;
	if (fgets(buf, sizeof(buf), f)) {
		p = strrchr(buf, ')');
		gone = p && p[1] == ' ' && (p[2] == 'Z' || p[2] == 'X');
	}
	fclose(f);
	return gone;
}

/* Only the programs of @cmd load (the others would need what that command does not). */
static void select_programs(struct sluice_trace_bpf *skel, int exits, int kernel_btf, int kernel_raw,
			    int user)
{
	bpf_program__set_autoload(skel->progs.handle_userspace_exit, exits);
	bpf_program__set_autoload(skel->progs.kernel_done_btf, kernel_btf);
	bpf_program__set_autoload(skel->progs.kernel_done_raw, kernel_raw);
	bpf_program__set_autoload(skel->progs.user_start, user);
	bpf_program__set_autoload(skel->progs.user_done, user);
}

/* ---- exits ---- */

static const char *exit_name(unsigned int r)
{
	static const char *const names[] = {
		[0] = "UNKNOWN", [1] = "EXCEPTION", [2] = "IO", [3] = "HYPERCALL",
		[4] = "DEBUG", [5] = "HLT", [6] = "MMIO", [7] = "IRQ_WINDOW_OPEN",
		[8] = "SHUTDOWN", [9] = "FAIL_ENTRY", [10] = "INTR", [11] = "SET_TPR",
		[12] = "TPR_ACCESS", [17] = "INTERNAL_ERROR", [24] = "SYSTEM_EVENT",
		[29] = "X86_RDMSR", [30] = "X86_WRMSR", [SLUICE_TRACE_EXIT_ERR] = "KVM_RUN_ERROR",
	};

	return r < sizeof(names) / sizeof(names[0]) && names[r] ? names[r] : NULL;
}

static int print_exits(struct sluice_trace_bpf *skel, pid_t pid)
{
	int ncpu = libbpf_num_possible_cpus(), fd = bpf_map__fd(skel->maps.exits), first = 1;
	unsigned long long total = 0;
	__u64 *vals;
	__u32 key;

	if (ncpu < 0)
		return ncpu;
	vals = calloc((size_t)ncpu, sizeof(*vals));
	if (!vals)
		return -ENOMEM;
	if (env.json)
		printf("{\"pid\": %d, \"exits\": {", pid);
	else
		printf("KVM exits to userspace, pid %d:\n%-18s %12s\n", pid, "REASON", "COUNT");
	for (key = 0; key < SLUICE_TRACE_MAX_EXIT; key++) {
		unsigned long long n = 0;
		const char *name = exit_name(key);
		char num[16];
		int i;

		if (bpf_map_lookup_elem(fd, &key, vals))
			continue;
		for (i = 0; i < ncpu; i++)
			n += vals[i];
		if (!n)
			continue;
		if (!name) {
			snprintf(num, sizeof(num), "%u", key);
			name = num;
		}
		total += n;
		if (env.json)
			printf("%s\"%s\": %llu", first ? "" : ", ", name, n);
		else
			printf("%-18s %12llu\n", name, n);
		first = 0;
	}
	if (env.json)
		printf("}, \"total\": %llu}\n", total);
	else
		printf("%-18s %12llu\n", "TOTAL", total);
	free(vals);
	return 0;
}

static int run_exits(void)
{
	struct sluice_trace_bpf *skel;
	struct child c = { .go = -1 };
	int err;

	if (check_kernel_btf())
		return 1;
	if (env.cmd_argv) {
		if (child_spawn(&c, env.cmd_argv))
			return 1;
		env.pid = c.pid;
	}

	skel = sluice_trace_bpf__open();
	if (!skel) {
		fprintf(stderr, "sluice-trace: cannot open the BPF object: %s\n", strerror(errno));
		err = 1;
		goto out_kill_child;
	}
	skel->rodata->target_tgid = (__u32)env.pid;
	select_programs(skel, 1, 0, 0, 0);
	bpf_map__set_max_entries(skel->maps.events, (__u32)getpagesize());
	err = load_skel(skel);
	if (err)
		goto out_destroy;
	err = sluice_trace_bpf__attach(skel);
	if (err) {
		fprintf(stderr, "sluice-trace: cannot attach to kvm:kvm_userspace_exit: %s%s\n",
			strerror(-err), err == -ENOENT ?
			" (is the kvm module loaded and tracefs mounted on /sys/kernel/tracing?)" : "");
		goto out_destroy;
	}

	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	if (c.pid) {
		if (child_start(&c)) {
			err = 1;
			goto out_destroy;
		}
		child_reap(&c, 1);
	} else if (env.duration) {
		sleep((unsigned int)env.duration);
	} else {
		while (!stop)
			pause();
	}
	err = print_exits(skel, env.pid);
	if (!err)
		err = child_status(&c);
out_destroy:
	sluice_trace_bpf__destroy(skel);
out_kill_child:
	child_kill(&c);
	return err < 0 ? 1 : err;
}

/* ---- latency, snoop ---- */

/* What is traced, and how (decided before loading, reported in the output). */
struct plan {
	int kernel;			/* the module's tracepoint is attached */
	enum attach_mode kattach;	/* TP_BTF or RAW_TP */
	char kernel_why[160];		/* why not, when !kernel */
	int user;			/* at least one binary attached */
	char user_why[160];
	struct {
		char path[PATH_MAX];
		int explicit;		/* given by the user: failing to attach is an error */
		int attached;
	} bin[MAX_BINARIES + 8];
	int nbin;
	pid_t user_pid;			/* -1: every process */
};

static int plan_add_binary(struct plan *p, const char *path, int explicit)
{
	char real[PATH_MAX];
	int i;

	if (!realpath(path, real)) {
		if (explicit) {
			fprintf(stderr, "sluice-trace: %s: %s\n", path, strerror(errno));
			return -1;
		}
		return 0;
	}
	for (i = 0; i < p->nbin; i++) {
		if (!strcmp(p->bin[i].path, real)) {
			p->bin[i].explicit |= explicit;
			return 0;
		}
	}
	if (p->nbin == (int)(sizeof(p->bin) / sizeof(p->bin[0])))
		return 0;
	snprintf(p->bin[p->nbin].path, sizeof(p->bin[p->nbin].path), "%s", real);
	p->bin[p->nbin].explicit = explicit;
	p->nbin++;
	return 0;
}

/* COMMAND's program as execvp would find it, into @out; 0 when not found. */
static int find_in_path(const char *name, char *out, size_t len)
{
	const char *path = getenv("PATH");
	char *dirs, *dir, *save = NULL;
	int found = 0;

	if (strchr(name, '/')) {
		snprintf(out, len, "%s", name);
		return access(out, X_OK) == 0;
	}
	dirs = strdup(path ? path : "/usr/bin:/bin");
	if (!dirs)
		return 0;
	for (dir = strtok_r(dirs, ":", &save); dir && !found; dir = strtok_r(NULL, ":", &save)) {
		snprintf(out, len, "%s/%s", *dir ? dir : ".", name);
		found = access(out, X_OK) == 0;
	}
	free(dirs);
	return found;
}

/* The sluice binaries installed beside sluice-trace (bindir), or in the build tree. */
static void plan_default_binaries(struct plan *p)
{
	static const char *const rel[] = {
		"sluice", "sluice-io", "sluice-img",
		"../user/vmm/sluice", "../user/tools/sluice-io", "../user/tools/sluice-img",
	};
	char self[PATH_MAX], path[PATH_MAX + 64], *slash;
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	size_t i;

	if (n <= 0)
		return;
	self[n] = '\0';
	slash = strrchr(self, '/');
	if (!slash)
		return;
	*slash = '\0';
	for (i = 0; i < sizeof(rel) / sizeof(rel[0]); i++) {
		snprintf(path, sizeof(path), "%s/%s", self, rel[i]);
		if (access(path, X_OK) == 0)
			plan_add_binary(p, path, 0);
	}
}

static int make_plan(struct plan *p)
{
	int want_kernel = !env.dataplanes || (env.dataplanes & DP_KERNEL);
	int want_user = !env.dataplanes || (env.dataplanes & DP_USER);
	int have_vmlinux_btf = access(VMLINUX_BTF, R_OK) == 0;
	int i;

	memset(p, 0, sizeof(*p));
	p->user_pid = -1;
	if (check_kernel_btf())
		return -1;

	/* kernel dataplane */
	if (!want_kernel) {
		snprintf(p->kernel_why, sizeof(p->kernel_why), "not asked for");
	} else if (access(SYS_MODULE, F_OK)) {
		if (env.dataplanes & DP_KERNEL) {
			fprintf(stderr, "sluice-trace: sluice_blk module not loaded: no kernel-dataplane tracepoints\n");
			return -1;
		}
		snprintf(p->kernel_why, sizeof(p->kernel_why), "sluice_blk module not loaded");
		fprintf(stderr, "sluice-trace: sluice_blk module not loaded: no kernel-dataplane tracepoints; "
			"tracing the user dataplane only\n");
	} else {
		p->kernel = 1;
		p->kattach = env.attach;
		if (p->kattach == ATTACH_TP_BTF && !have_vmlinux_btf) {
			fprintf(stderr, "sluice-trace: --attach tp_btf needs the running kernel's BTF "
				"(%s missing): use --attach raw_tp\n", VMLINUX_BTF);
			return -1;
		}
		if (p->kattach == ATTACH_TP_BTF && access(MODULE_BTF, R_OK)) {
			fprintf(stderr, "sluice-trace: --attach tp_btf: sluice_blk has no BTF on this kernel "
				"(%s missing): use --attach raw_tp\n", MODULE_BTF);
			return -1;
		}
		if (p->kattach == ATTACH_AUTO)
			p->kattach = have_vmlinux_btf && !access(MODULE_BTF, R_OK) ? ATTACH_TP_BTF
										 : ATTACH_RAW_TP;
	}

	/* user dataplane */
	if (!want_user) {
		snprintf(p->user_why, sizeof(p->user_why), "not asked for");
		return 0;
	}
	if (env.pid) {
		char exe[64];

		if (pid_gone(env.pid)) {
			fprintf(stderr, "sluice-trace: no process %d\n", env.pid);
			return -1;
		}
		snprintf(exe, sizeof(exe), "/proc/%d/exe", env.pid);
		if (plan_add_binary(p, exe, 1))
			return -1;
		p->user_pid = env.pid;
	}
	for (i = 0; i < env.nbinaries; i++) {
		if (access(env.binaries[i], R_OK)) {
			fprintf(stderr, "sluice-trace: --binary %s: %s\n", env.binaries[i], strerror(errno));
			return -1;
		}
		if (plan_add_binary(p, env.binaries[i], 1))
			return -1;
	}
	if (!env.pid && env.cmd_argv) {
		char path[PATH_MAX];

		if (find_in_path(env.cmd_argv[0], path, sizeof(path)))
			plan_add_binary(p, path, 0);
	}
	if (!env.pid && !env.nbinaries)
		plan_default_binaries(p);
	if (!p->nbin) {
		if (env.dataplanes & DP_USER) {
			fprintf(stderr, "sluice-trace: no binary to trace the user dataplane in "
				"(give -p PID or --binary PATH)\n");
			return -1;
		}
		snprintf(p->user_why, sizeof(p->user_why), "no sluice binary found (give -p PID or --binary PATH)");
	}
	return 0;
}

static int attach_kernel(struct sluice_trace_bpf *skel, struct plan *p)
{
	struct bpf_program *prog = p->kattach == ATTACH_TP_BTF ? skel->progs.kernel_done_btf
							       : skel->progs.kernel_done_raw;
	struct bpf_link *link = bpf_program__attach(prog);

	if (!link) {
		int err = -errno;

		fprintf(stderr, "sluice-trace: cannot attach to sluice_blk:req_done (%s): %s\n",
			p->kattach == ATTACH_TP_BTF ? "tp_btf" : "raw_tp", strerror(-err));
		return err;
	}
	if (p->kattach == ATTACH_TP_BTF)
		skel->links.kernel_done_btf = link;
	else
		skel->links.kernel_done_raw = link;
	return 0;
}

static struct bpf_link *links_user[2 * (MAX_BINARIES + 8)];
static int nlinks_user;

static int attach_user(struct sluice_trace_bpf *skel, struct plan *p)
{
	int i;

	for (i = 0; i < p->nbin; i++) {
		struct bpf_link *start, *done = NULL;
		int err;

		libbpf_quiet = 1;
		start = bpf_program__attach_usdt(skel->progs.user_start, p->user_pid, p->bin[i].path,
						 "sluice", "blk_req_start", NULL);
		if (start)
			done = bpf_program__attach_usdt(skel->progs.user_done, p->user_pid,
							p->bin[i].path, "sluice", "blk_req_done", NULL);
		err = -errno;
		libbpf_quiet = 0;
		if (!start || !done) {
			bpf_link__destroy(start);
			if (!p->bin[i].explicit)
				continue;
			fprintf(stderr, "sluice-trace: cannot attach to the sluice USDT probes in %s: %s%s\n",
				p->bin[i].path, strerror(-err),
				err == -ENOENT ? " (the binary has no sluice:blk_req_start/done probes)" : "");
			return err;
		}
		links_user[nlinks_user++] = start;
		links_user[nlinks_user++] = done;
		p->bin[i].attached = 1;
		p->user = 1;
	}
	if (!p->user && p->nbin && !p->user_why[0])
		snprintf(p->user_why, sizeof(p->user_why), "no binary with sluice USDT probes found");
	return 0;
}

static void detach_user(void)
{
	while (nlinks_user)
		bpf_link__destroy(links_user[--nlinks_user]);
}

static const char *unit_name(void)
{
	return env.ms ? "msecs" : "usecs";
}

static void read_counters(struct sluice_trace_bpf *skel, unsigned long long *out)
{
	int ncpu = libbpf_num_possible_cpus(), fd = bpf_map__fd(skel->maps.counters), i;
	__u64 *vals;
	__u32 key;

	memset(out, 0, SLUICE_TRACE_CNT_MAX * sizeof(*out));
	if (ncpu <= 0)
		return;
	vals = calloc((size_t)ncpu, sizeof(*vals));
	if (!vals)
		return;
	for (key = 0; key < SLUICE_TRACE_CNT_MAX; key++) {
		if (bpf_map_lookup_elem(fd, &key, vals))
			continue;
		for (i = 0; i < ncpu; i++)
			out[key] += vals[i];
	}
	free(vals);
}

/*
 * Move the histograms of the current interval into @out: flip the
 * generation, let programs that read the old one finish, then read and
 * delete its histograms.
 */
static int collect_hists(struct sluice_trace_bpf *skel, struct trace_hists *out)
{
	int fd = bpf_map__fd(skel->maps.hists), err = 0;
	struct sluice_trace_hist_key key, next, *keys;
	__u8 old = skel->bss->cur_gen;
	size_t n = 0, i;
	void *prev = NULL;

	__atomic_store_n(&skel->bss->cur_gen, (__u8)(old ^ 1), __ATOMIC_SEQ_CST);
	usleep(20000);
	keys = calloc(SLUICE_TRACE_MAX_HISTS, sizeof(*keys));
	if (!keys)
		return -ENOMEM;
	while (n < SLUICE_TRACE_MAX_HISTS && !bpf_map_get_next_key(fd, prev, &next)) {
		if (next.gen == old)
			keys[n++] = next;
		key = next;
		prev = &key;
	}
	for (i = 0; i < n; i++) {
		struct sluice_trace_hist h;

		if (bpf_map_lookup_elem(fd, &keys[i], &h))
			continue;
		bpf_map_delete_elem(fd, &keys[i]);
		err = trace_hists_add(out, &keys[i], &h);
		if (err)
			break;
	}
	free(keys);
	trace_hists_sort(out);
	return err;
}

static const char *attach_name(enum attach_mode m)
{
	return m == ATTACH_TP_BTF ? "tp_btf" : "raw_tp";
}

static void print_lost_text(const unsigned long long *cnt)
{
	if (cnt[SLUICE_TRACE_CNT_NO_START])
		printf("note: %llu user-dataplane requests were in flight when tracing began (not counted)\n",
		       cnt[SLUICE_TRACE_CNT_NO_START]);
	if (cnt[SLUICE_TRACE_CNT_INFLIGHT_FULL])
		printf("warning: %llu user-dataplane requests not counted (more than %d in flight)\n",
		       cnt[SLUICE_TRACE_CNT_INFLIGHT_FULL], SLUICE_TRACE_MAX_INFLIGHT);
	if (cnt[SLUICE_TRACE_CNT_HIST_FULL])
		printf("warning: %llu requests not counted (more than %d histograms)\n",
		       cnt[SLUICE_TRACE_CNT_HIST_FULL], SLUICE_TRACE_MAX_HISTS);
	if (cnt[SLUICE_TRACE_CNT_EVENT_LOST])
		printf("warning: %llu requests lost (ring buffer full)\n", cnt[SLUICE_TRACE_CNT_EVENT_LOST]);
}

static void print_lost_json(const unsigned long long *cnt)
{
	printf("\"lost\": {\"in_flight_at_start\": %llu, \"in_flight_overflow\": %llu, \"histograms_full\": %llu, \"events_lost\": %llu}",
	       cnt[SLUICE_TRACE_CNT_NO_START], cnt[SLUICE_TRACE_CNT_INFLIGHT_FULL],
	       cnt[SLUICE_TRACE_CNT_HIST_FULL], cnt[SLUICE_TRACE_CNT_EVENT_LOST]);
}

static void print_dataplanes_json(const struct plan *p, const struct trace_hists *s)
{
	int i, first = 1;

	printf("\"dataplanes\": {\"kernel\": {\"traced\": %s, ", p->kernel ? "true" : "false");
	if (p->kernel)
		printf("\"attach\": \"%s\", \"requests\": %llu}", attach_name(p->kattach),
		       s ? trace_hists_total(s, SLUICE_TRACE_DP_KERNEL) : 0ULL);
	else {
		printf("\"reason\": ");
		trace_json_str(stdout, p->kernel_why);
		printf("}");
	}
	printf(", \"user\": {\"traced\": %s, ", p->user ? "true" : "false");
	if (p->user) {
		printf("\"requests\": %llu, \"binaries\": [",
		       s ? trace_hists_total(s, SLUICE_TRACE_DP_USER) : 0ULL);
		for (i = 0; i < p->nbin; i++) {
			if (!p->bin[i].attached)
				continue;
			printf("%s", first ? "" : ", ");
			trace_json_str(stdout, p->bin[i].path);
			first = 0;
		}
		printf("]");
		if (p->user_pid > 0)
			printf(", \"pid\": %d", p->user_pid);
		printf("}");
	} else {
		printf("\"reason\": ");
		trace_json_str(stdout, p->user_why);
		printf("}");
	}
	/* Forwarded requests are completed by the module: traced with the kernel dataplane. */
	printf(", \"kernel->user\": {\"traced\": %s", p->kernel ? "true" : "false");
	if (p->kernel)
		printf(", \"requests\": %llu}}", trace_hists_total(s, SLUICE_TRACE_DP_FALLBACK));
	else
		printf(", \"reason\": \"the kernel dataplane is not traced\"}}");
}

static void print_report(struct sluice_trace_bpf *skel, const struct plan *p,
			 const struct trace_hists *s, double t0)
{
	unsigned long long cnt[SLUICE_TRACE_CNT_MAX];
	unsigned int dp;
	size_t i;

	read_counters(skel, cnt);
	if (env.json) {
		int first = 1;

		printf("{\"elapsed_s\": %.3f, \"unit\": \"%s\", ", now_s() - t0, unit_name());
		print_dataplanes_json(p, s);
		printf(", \"histograms\": [");
		for (i = 0; i < s->n; i++) {
			printf("%s", first ? "" : ", ");
			trace_print_hist_json(stdout, &s->v[i], &env.split, unit_name());
			first = 0;
		}
		printf("], ");
		print_lost_json(cnt);
		printf("}\n");
		fflush(stdout);
		return;
	}
	if (env.interval) {
		char buf[32];
		time_t t = time(NULL);
		struct tm tm;

		strftime(buf, sizeof(buf), "%H:%M:%S", localtime_r(&t, &tm));
		printf("%s\n", buf);
	}
	for (dp = 0; dp < SLUICE_TRACE_DP_MAX; dp++) {
		int traced = dp == SLUICE_TRACE_DP_USER ? p->user : p->kernel, any = 0;

		if (!traced)
			continue;
		for (i = 0; i < s->n; i++) {
			if (s->v[i].key.dataplane != dp)
				continue;
			trace_print_hist(stdout, &s->v[i], &env.split, unit_name());
			printf("\n");
			any = 1;
		}
		if (!any)
			printf("%s: no requests\n\n", trace_dataplane_name(dp));
	}
	print_lost_text(cnt);
	fflush(stdout);
}

/* One snoop event. */
static double snoop_t0_ns;

static int on_event(void *ctx, void *data, size_t size)
{
	const struct sluice_trace_event *e = data;
	double div = env.ms ? 1e6 : 1e3, t;
	char disk[64], status[32], queue[16];

	if (size < sizeof(*e))
		return 0;
	t = ((double)e->ts_ns - snoop_t0_ns) / 1e9;
	trace_disk_label(disk, sizeof(disk), e->disk, e->blk, e->pid);
	if (e->queue == SLUICE_TRACE_NO_QUEUE)
		snprintf(queue, sizeof(queue), "-");
	else
		snprintf(queue, sizeof(queue), "%u", e->queue);
	if (e->dataplane == SLUICE_TRACE_DP_USER) {
		const char *name = e->status < 0 ? strerrorname_np(-e->status) : NULL;

		if (!e->status)
			snprintf(status, sizeof(status), "ok");
		else if (name)
			snprintf(status, sizeof(status), "-%s", name);
		else
			snprintf(status, sizeof(status), "%d", e->status);
	} else {
		static const char *const vs[] = { "ok", "ioerr", "unsupp" };

		if (e->status >= 0 && e->status < 3)
			snprintf(status, sizeof(status), "%s", vs[e->status]);
		else
			snprintf(status, sizeof(status), "%d", e->status);
	}
	if (env.json) {
		printf("{\"time_s\": %.6f, \"disk\": ", t);
		trace_json_str(stdout, disk);
		if (e->pid)
			printf(", \"pid\": %u", e->pid);
		if (e->queue == SLUICE_TRACE_NO_QUEUE)
			printf(", \"queue\": null");
		else
			printf(", \"queue\": %u", e->queue);
		printf(", \"op\": \"%s\", \"raw_op\": %u, \"sector\": %llu, \"offset\": %llu, \"bytes\": %llu, \"latency_ns\": %llu, \"dataplane\": \"%s\", \"fallback\": ",
		       trace_op_name(e->op), e->raw_op, (unsigned long long)(e->offset >> 9),
		       (unsigned long long)e->offset, (unsigned long long)e->bytes,
		       (unsigned long long)e->latency_ns, trace_dataplane_name(e->dataplane));
		if (e->fallback == SLUICE_TRACE_FB_NONE)
			printf("null");
		else
			printf("\"%s\"", trace_fallback_name(e->fallback));
		printf(", \"status\": \"%s\"}\n", status);
	} else {
		printf("%-11.6f %-22s %5s %-12s %12llu %8llu %11.3f %-12s %-8s %s\n", t, disk, queue,
		       trace_op_name(e->op), (unsigned long long)(e->offset >> 9),
		       (unsigned long long)e->bytes, (double)e->latency_ns / div,
		       trace_dataplane_name(e->dataplane), trace_fallback_name(e->fallback), status);
	}
	return 0;
}

static void print_banner(const struct plan *p)
{
	int i;

	fprintf(stderr, "Tracing %s: ", env.cmd == CMD_SNOOP ? "requests" : "request latency");
	if (p->kernel)
		fprintf(stderr, "kernel dataplane (sluice_blk:req_done, %s)", attach_name(p->kattach));
	if (p->user) {
		fprintf(stderr, "%suser dataplane (USDT sluice:blk_req_*", p->kernel ? "; " : "");
		if (p->user_pid > 0)
			fprintf(stderr, ", pid %d", p->user_pid);
		fprintf(stderr, " in");
		for (i = 0; i < p->nbin; i++)
			if (p->bin[i].attached)
				fprintf(stderr, " %s", p->bin[i].path);
		fprintf(stderr, ")");
	}
	fprintf(stderr, "%s\n", env.cmd_argv ? "." : ". Hit Ctrl-C to end.");
	if (!p->kernel && p->kernel_why[0] && strcmp(p->kernel_why, "not asked for") &&
	    strcmp(p->kernel_why, "sluice_blk module not loaded"))
		fprintf(stderr, "kernel dataplane not traced: %s\n", p->kernel_why);
	if (!p->user && p->user_why[0] && strcmp(p->user_why, "not asked for"))
		fprintf(stderr, "user dataplane not traced: %s\n", p->user_why);
}

static int write_plot(FILE *f, const struct plan *p, const struct trace_hists *s)
{
	char sub[256];
	size_t n = 0;
	int err;

	n += (size_t)snprintf(sub + n, sizeof(sub) - n, "kernel dataplane: ");
	if (p->kernel)
		n += (size_t)snprintf(sub + n, sizeof(sub) - n, "%llu requests (%s)",
				      trace_hists_total(s, SLUICE_TRACE_DP_KERNEL), attach_name(p->kattach));
	else
		n += (size_t)snprintf(sub + n, sizeof(sub) - n, "not traced");
	n += (size_t)snprintf(sub + n, sizeof(sub) - n, "; user dataplane: ");
	if (p->user)
		n += (size_t)snprintf(sub + n, sizeof(sub) - n, "%llu requests",
				      trace_hists_total(s, SLUICE_TRACE_DP_USER));
	else
		n += (size_t)snprintf(sub + n, sizeof(sub) - n, "not traced");
	if (p->kernel)
		snprintf(sub + n, sizeof(sub) - n, "; kernel->user fallback: %llu requests",
			 trace_hists_total(s, SLUICE_TRACE_DP_FALLBACK));
	err = trace_plot_svg(f, s, &env.split, unit_name(), "sluice-trace latency", sub);
	if (fclose(f) || err) {
		fprintf(stderr, "sluice-trace: --plot %s: write error\n", env.plot);
		return -1;
	}
	return 0;
}

static int run_blk(void)
{
	struct trace_hists interval = {}, all = {};
	struct sluice_trace_bpf *skel = NULL;
	struct ring_buffer *rb = NULL;
	struct child c = { .go = -1 };
	FILE *plot = NULL;
	double t0, next;
	struct plan *p;
	int err = 1, printed = 0;

	p = calloc(1, sizeof(*p));
	if (!p)
		return 1;
	if (make_plan(p))
		goto out;
	/* An unwritable --plot fails now, not after tracing. */
	if (env.plot) {
		plot = fopen(env.plot, "w");
		if (!plot) {
			fprintf(stderr, "sluice-trace: --plot %s: %s\n", env.plot, strerror(errno));
			goto out;
		}
	}
	if (!p->kernel && !p->nbin) {
		fprintf(stderr, "sluice-trace: nothing to trace: %s; %s\n",
			p->kernel_why, p->user_why[0] ? p->user_why : "no user dataplane");
		goto out;
	}
	if (env.cmd_argv && child_spawn(&c, env.cmd_argv))
		goto out;

	skel = sluice_trace_bpf__open();
	if (!skel) {
		fprintf(stderr, "sluice-trace: cannot open the BPF object: %s\n", strerror(errno));
		goto out;
	}
	skel->rodata->target_tgid = p->user_pid > 0 ? (__u32)p->user_pid : 0;
	skel->rodata->targ_per_disk = (__u8)env.split.disk;
	skel->rodata->targ_per_queue = (__u8)env.split.queue;
	skel->rodata->targ_per_op = (__u8)env.split.op;
	skel->rodata->targ_ms = (__u8)env.ms;
	skel->rodata->targ_snoop = env.cmd == CMD_SNOOP;
	select_programs(skel, 0, p->kernel && p->kattach == ATTACH_TP_BTF,
			p->kernel && p->kattach == ATTACH_RAW_TP, p->nbin > 0);
	if (env.cmd != CMD_SNOOP)
		bpf_map__set_max_entries(skel->maps.events, (__u32)getpagesize());
	err = load_skel(skel);
	if (err) {
		err = 1;
		goto out;
	}
	err = 1;
	if (p->kernel && attach_kernel(skel, p))
		goto out;
	if (p->nbin && attach_user(skel, p))
		goto out;
	if (!p->kernel && !p->user) {
		fprintf(stderr, "sluice-trace: nothing to trace: %s; %s\n", p->kernel_why, p->user_why);
		goto out;
	}
	if (env.cmd == CMD_SNOOP) {
		rb = ring_buffer__new(bpf_map__fd(skel->maps.events), on_event, NULL, NULL);
		if (!rb) {
			fprintf(stderr, "sluice-trace: ring buffer: %s\n", strerror(errno));
			goto out;
		}
	}

	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	print_banner(p);
	t0 = now_s();
	{
		struct timespec ts;

		clock_gettime(CLOCK_MONOTONIC, &ts);
		snoop_t0_ns = (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
	}
	if (env.cmd == CMD_SNOOP && !env.json)
		printf("%-11s %-22s %5s %-12s %12s %8s %11s %-12s %-8s %s\n", "TIME(s)", "DISK", "QUEUE", "OP",
		       "SECTOR", "BYTES", env.ms ? "LAT(ms)" : "LAT(us)", "DATAPLANE", "FALLBACK", "STATUS");
	if (c.pid && child_start(&c))
		goto out;

	next = t0 + env.interval;
	for (;;) {
		if (rb) {
			int n = ring_buffer__poll(rb, 100);

			if (n < 0 && n != -EINTR) {
				fprintf(stderr, "sluice-trace: ring buffer: %s\n", strerror(-n));
				goto out;
			}
			fflush(stdout);
		} else {
			usleep(50000);
		}
		if (stop)
			break;
		if (c.pid && child_reap(&c, 0))
			break;
		if (!c.pid && env.pid && pid_gone(env.pid))
			break;
		if (env.interval && now_s() >= next) {
			trace_hists_reset(&interval);
			if (collect_hists(skel, &interval))
				goto out;
			print_report(skel, p, &interval, t0);
			for (size_t i = 0; i < interval.n; i++)
				trace_hists_add(&all, &interval.v[i].key, &interval.v[i].h);
			printed++;
			if (env.count && printed >= env.count)
				break;
			next += env.interval;
		}
	}
	if (rb) {
		ring_buffer__consume(rb);
		if (!env.json) {
			unsigned long long cnt[SLUICE_TRACE_CNT_MAX];

			read_counters(skel, cnt);
			print_lost_text(cnt);
		}
	} else if (!env.interval || !env.count || printed < env.count) {
		/* the last (or only) interval, up to now */
		trace_hists_reset(&interval);
		if (collect_hists(skel, &interval))
			goto out;
		if (!env.interval || interval.n || !printed)
			print_report(skel, p, &interval, t0);
		for (size_t i = 0; i < interval.n; i++)
			trace_hists_add(&all, &interval.v[i].key, &interval.v[i].h);
	}
	fflush(stdout);
	err = 0;
	if (plot) {
		trace_hists_sort(&all);
		if (write_plot(plot, p, &all))
			err = 1;
		plot = NULL;
	}
	if (!err && c.pid) {
		child_reap(&c, 1);
		err = child_status(&c);
	}
out:
	if (plot)
		fclose(plot);
	ring_buffer__free(rb);
	detach_user();
	sluice_trace_bpf__destroy(skel);
	child_kill(&c);
	trace_hists_free(&interval);
	trace_hists_free(&all);
	free(p);
	return err;
}

int main(int argc, char **argv)
{
	static const struct argp argp = { .options = opts, .parser = parse_arg, .doc = doc };
	int i, nargs = argc;

	/* Everything after the first "--" is COMMAND: argp never sees it. */
	for (i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--")) {
			nargs = i;
			if (i + 1 == argc) {
				fprintf(stderr, "sluice-trace: -- must be followed by a COMMAND\n");
				return 2;
			}
			env.cmd_argv = &argv[i + 1];
			break;
		}
	}
	if (argp_parse(&argp, nargs, argv, 0, NULL, NULL))
		return 2;
	libbpf_set_print(libbpf_print);
	if (env.cmd_argv) {
		char path[PATH_MAX];

		if (!find_in_path(env.cmd_argv[0], path, sizeof(path))) {
			fprintf(stderr, "sluice-trace: cannot run %s: %s\n", env.cmd_argv[0],
				strchr(env.cmd_argv[0], '/') ? strerror(errno) : "no such file in PATH");
			return 1;
		}
	}

	if (env.cmd == CMD_EXITS)
		return run_exits();
	return run_blk();
}
