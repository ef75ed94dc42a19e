// SPDX-License-Identifier: GPL-2.0
/* sluice_trace.c - sluice-trace: the loader and reports of sluice's BPF tracing (libbpf CO-RE skeletons). */
#include <argp.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <bpf/libbpf.h>
#include <bpf/bpf.h>

#include "sluice_trace.h"
#include "sluice_trace.skel.h"

static struct env {
	pid_t pid;
	int duration;
	int json;
	char **cmd;
} env;

const char *argp_program_version = "sluice-trace 0.1";
static const char doc[] =
"sluice-trace: where sluice's time goes.\n"
"\n"
"USAGE: sluice-trace exits [-p PID] [-d SECONDS] [--json] [-- COMMAND [ARG...]]\n"
"\n"
"  exits   count KVM exits to userspace by reason, for one process: every exit\n"
"          listed is a KVM_RUN that returned to the VMM (queue notifications on\n"
"          ioeventfds never appear here).\n"
"\n"
"EXAMPLES:\n"
"    sluice-trace exits -- sluice --kernel bzImage ...   # run and trace a VMM\n"
"    sluice-trace exits -p 1234 -d 10                    # trace pid 1234 for 10 s\n";

static const struct argp_option opts[] = {
	{ "pid", 'p', "PID", 0, "Trace this process only", 0 },
	{ "duration", 'd', "SECONDS", 0, "Stop after SECONDS (with -p; default: until Ctrl-C)", 0 },
	{ "json", 'j', NULL, 0, "Print the report as one JSON object", 0 },
	{ NULL, 'h', NULL, OPTION_HIDDEN, "Show the full help", 0 },
	{},
};

static error_t parse_arg(int key, char *arg, struct argp_state *state)
{
	char *end;

	switch (key) {
	case 'h':
		argp_state_help(state, stderr, ARGP_HELP_STD_HELP);
		break;
	case 'p':
		errno = 0;
		env.pid = (pid_t)strtol(arg, &end, 10);
		if (errno || *end || env.pid <= 0)
			argp_error(state, "invalid PID '%s'", arg);
		break;
	case 'd':
		errno = 0;
		env.duration = (int)strtol(arg, &end, 10);
		if (errno || *end || env.duration <= 0)
			argp_error(state, "invalid duration '%s'", arg);
		break;
	case 'j':
		env.json = 1;
		break;
	case ARGP_KEY_ARG:
		if (state->arg_num == 0) {
			if (strcmp(arg, "exits"))
				argp_error(state, "unknown command '%s'", arg);
		} else {
			env.cmd = &state->argv[state->next - 1];
			state->next = state->argc;
		}
		break;
	case ARGP_KEY_END:
		if (state->arg_num == 0)
			argp_error(state, "a command is required (exits)");
		if (env.pid && env.cmd)
			argp_error(state, "-p and a COMMAND exclude each other");
		break;
	default:
		return ARGP_ERR_UNKNOWN;
	}
	return 0;
}

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

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
	stop = 1;
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

static int libbpf_print(enum libbpf_print_level level, const char *fmt, va_list args)
{
	if (level == LIBBPF_DEBUG)
		return 0;
	return vfprintf(stderr, fmt, args);
}

int main(int argc, char **argv)
{
	static const struct argp argp = { .options = opts, .parser = parse_arg, .doc = doc };
	struct sluice_trace_bpf *skel;
	int go[2] = { -1, -1 }, status = 0, err;
	pid_t child = 0;

	err = argp_parse(&argp, argc, argv, 0, NULL, NULL);
	if (err)
		return 2;
	libbpf_set_print(libbpf_print);

	if (env.cmd) {
		/* The child waits until the probes are attached, then execs COMMAND. */
		if (pipe(go)) {
			perror("sluice-trace: pipe");
			return 1;
		}
		child = fork();
		if (child < 0) {
			perror("sluice-trace: fork");
			return 1;
		}
		if (child == 0) {
			char c;

			close(go[1]);
			if (read(go[0], &c, 1) != 1)
				_exit(127);
			execvp(env.cmd[0], env.cmd);
			fprintf(stderr, "sluice-trace: cannot run %s: %s\n", env.cmd[0], strerror(errno));
			_exit(127);
		}
		close(go[0]);
		env.pid = child;
	}

	skel = sluice_trace_bpf__open();
	if (!skel) {
		fprintf(stderr, "sluice-trace: cannot open the BPF object: %s\n", strerror(errno));
		err = 1;
		goto out_kill_child;
	}
	skel->rodata->target_tgid = (__u32)env.pid;
	err = sluice_trace_bpf__load(skel);
	if (err) {
		fprintf(stderr, "sluice-trace: cannot load the BPF programs: %s%s\n", strerror(-err),
			err == -EPERM ? " (run as root or with CAP_BPF + CAP_PERFMON)" : "");
		goto out_destroy;
	}
	err = sluice_trace_bpf__attach(skel);
	if (err) {
		fprintf(stderr, "sluice-trace: cannot attach to kvm:kvm_userspace_exit: %s%s\n",
			strerror(-err), err == -ENOENT ?
			" (is the kvm module loaded and tracefs mounted on /sys/kernel/tracing?)" : "");
		goto out_destroy;
	}

	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	if (child) {
		if (write(go[1], "g", 1) != 1) {
			perror("sluice-trace: start child");
			err = 1;
			goto out_destroy;
		}
		close(go[1]);
		go[1] = -1;
		while (waitpid(child, &status, 0) < 0 && errno == EINTR)
			;
		child = 0;
	} else if (env.duration) {
		sleep((unsigned int)env.duration);
	} else {
		while (!stop)
			pause();
	}
	err = print_exits(skel, env.pid);
	if (!err && WIFEXITED(status))
		err = WEXITSTATUS(status);
	else if (!err && WIFSIGNALED(status))
		err = 128 + WTERMSIG(status);
out_destroy:
	sluice_trace_bpf__destroy(skel);
out_kill_child:
	if (child > 0) {
		kill(child, SIGKILL);
		waitpid(child, NULL, 0);
	}
	if (go[1] >= 0)
		close(go[1]);
	return err < 0 ? 1 : err;
}
