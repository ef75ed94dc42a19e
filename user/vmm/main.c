// SPDX-License-Identifier: GPL-2.0
/* main.c - the sluice command line: parse the options, build the VM, run it until the guest resets or powers off. */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include "util.h"
#include "vmm.h"

#define EXIT_USAGE	2

enum {
	OPT_DRIVE = 0x100,
	OPT_IOTHREAD,
	OPT_CONTROL,
};

static const struct option long_options[] = {
	{ "kernel", required_argument, NULL, 'k' },
	{ "initrd", required_argument, NULL, 'i' },
	{ "append", required_argument, NULL, 'a' },
	{ "cpus", required_argument, NULL, 'c' },
	{ "mem", required_argument, NULL, 'm' },
	{ "drive", required_argument, NULL, OPT_DRIVE },
	{ "iothread", required_argument, NULL, OPT_IOTHREAD },
	{ "control", required_argument, NULL, OPT_CONTROL },
	{ "help", no_argument, NULL, 'h' },
	{ NULL, 0, NULL, 0 },
};

static void usage(FILE *f)
{
	fprintf(f,
		"usage: sluice --kernel FILE [options]\n"
		"Boot a Linux bzImage in a KVM virtual machine; its serial console (ttyS0) is stdin/stdout.\n"
		"\n"
		"  -k, --kernel FILE     the kernel: an x86-64 bzImage (boot protocol 2.12 or later)\n"
		"  -i, --initrd FILE     an initramfs, placed high in guest memory\n"
		"  -a, --append STR      the kernel command line (e.g. \"console=ttyS0 reboot=k panic=-1\")\n"
		"  -c, --cpus N          vCPUs, 1-%d (default 1)\n"
		"  -m, --mem SIZE        guest RAM with a k/M/G suffix; a bare number is MiB (default 256M,\n"
		"                        at least 16M; RAM above 3G appears above 4G)\n"
		"      --drive SPEC      (coming: not supported yet) a virtio-blk disk:\n"
		"                        file=PATH,format=raw|qcow2[,dataplane=user|kernel][,iothread=ID]\n"
		"      --iothread ID     (coming: not supported yet) an IOThread for --drive ...,iothread=ID\n"
		"      --control PATH    (coming: not supported yet) the JSON control socket\n"
		"  -h, --help            this text\n"
		"\n"
		"The VM ends when the guest reboots (exit 0; use \"reboot=k\" and \"reboot -f\", or\n"
		"\"panic=-1\" so that \"poweroff -f\" ends in a reset) or on an error (non-zero, one line on stderr).\n",
		SLUICE_MAX_CPUS);
}

static int parse_cpus(const char *arg, unsigned int *out)
{
	char *end;
	unsigned long v;

	errno = 0;
	v = strtoul(arg, &end, 10);
	if (errno || end == arg || *end || arg[0] == '-' || v < 1 || v > SLUICE_MAX_CPUS)
		return -EINVAL;
	*out = v;
	return 0;
}

static int parse_mem(const char *arg, uint64_t *out)
{
	char buf[64];
	size_t len = strlen(arg);
	uint64_t v;
	int ret;

	/* A bare number is MiB, as with qemu's -m. */
	if (len && len < sizeof(buf) - 1 && arg[len - 1] >= '0' && arg[len - 1] <= '9') {
		snprintf(buf, sizeof(buf), "%sM", arg);
		arg = buf;
	}
	ret = sluice_parse_size(arg, &v);
	if (ret)
		return ret;
	if (v < SLUICE_MIN_MEM || v > (1ULL << 40))
		return -ERANGE;
	*out = v & ~0xfffULL;
	return 0;
}

/* Parse argv into @cfg; prints one line and returns EXIT_USAGE on bad input, -1 for --help. Main thread. */
static int parse_args(int argc, char **argv, struct sluice_config *cfg)
{
	int opt;

	cfg->nr_cpus = 1;
	cfg->mem_size = SLUICE_DEFAULT_MEM;
	opterr = 0;
	while ((opt = getopt_long(argc, argv, ":k:i:a:c:m:h", long_options, NULL)) != -1) {
		switch (opt) {
		case 'k':
			cfg->kernel = optarg;
			break;
		case 'i':
			cfg->initrd = optarg;
			break;
		case 'a':
			cfg->append = optarg;
			break;
		case 'c':
			if (parse_cpus(optarg, &cfg->nr_cpus)) {
				fprintf(stderr, "sluice: --cpus '%s': expected a number from 1 to %d\n",
					optarg, SLUICE_MAX_CPUS);
				return EXIT_USAGE;
			}
			break;
		case 'm':
			if (parse_mem(optarg, &cfg->mem_size)) {
				fprintf(stderr, "sluice: --mem '%s': expected a size from 16M to 1T (e.g. 512M, 4G)\n",
					optarg);
				return EXIT_USAGE;
			}
			break;
		case OPT_DRIVE:
			fprintf(stderr, "sluice: --drive is not supported yet\n");
			return EXIT_USAGE;
		case OPT_IOTHREAD:
			fprintf(stderr, "sluice: --iothread is not supported yet\n");
			return EXIT_USAGE;
		case OPT_CONTROL:
			fprintf(stderr, "sluice: --control is not supported yet\n");
			return EXIT_USAGE;
		case 'h':
			return -1;
		case ':':
			fprintf(stderr, "sluice: option '%s' needs an argument (see --help)\n", argv[optind - 1]);
			return EXIT_USAGE;
		default:
			fprintf(stderr, "sluice: unknown option '%s' (see --help)\n", argv[optind - 1]);
			return EXIT_USAGE;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "sluice: unexpected argument '%s' (see --help)\n", argv[optind]);
		return EXIT_USAGE;
	}
	if (!cfg->kernel) {
		fprintf(stderr, "sluice: --kernel is required (see --help)\n");
		return EXIT_USAGE;
	}
	return 0;
}

/* The signal thread: turn SIGINT/SIGTERM/SIGHUP into an exit request. */
static void *signal_thread(void *arg)
{
	struct sluice_vm *vm = arg;
	sigset_t set;
	int sig;

	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGHUP);
	if (sigwait(&set, &sig) == 0)
		sluice_vm_request_exit(vm, 128 + sig, "terminated by signal %d (%s)", sig, strsignal(sig));
	return NULL;
}

int main(int argc, char **argv)
{
	static struct sluice_vm vm = { .kvm_fd = -1, .vm_fd = -1 };
	struct sluice_config cfg = { 0 };
	struct termios saved_tty, raw_tty;
	bool tty_raw = false;
	pthread_t sig_thread;
	char err[512];
	sigset_t set;
	int ret;

	ret = parse_args(argc, argv, &cfg);
	if (ret < 0) {
		usage(stdout);
		return 0;
	}
	if (ret)
		return ret;

	pthread_mutex_init(&vm.exit_lock, NULL);
	pthread_cond_init(&vm.exit_cond, NULL);
	vm.nr_cpus = cfg.nr_cpus;

	/* Check the kernel before touching /dev/kvm, so that a bad file says so. */
	{
		FILE *f = fopen(cfg.kernel, "rb");
		uint8_t hdr[0x400];
		const char *why;
		long size;
		size_t n;

		if (!f) {
			fprintf(stderr, "sluice: cannot open %s: %s\n", cfg.kernel, strerror(errno));
			return 1;
		}
		n = fread(hdr, 1, sizeof(hdr), f);
		fseek(f, 0, SEEK_END);
		size = ftell(f);
		fclose(f);
		if (sluice_bzimage_check(hdr, n, size < 0 ? 0 : size, &why)) {
			fprintf(stderr, "sluice: %s %s\n", cfg.kernel, why);
			return 1;
		}
	}

	if (sluice_kvm_init(&vm, &cfg))
		return 1;
	ret = sluice_boot_load(&vm, &cfg, err, sizeof(err));
	if (ret) {
		fprintf(stderr, "sluice: %s\n", err);
		goto err_kvm;
	}
	ret = sluice_mptable_write(&vm);
	if (ret) {
		fprintf(stderr, "sluice: cannot write the MP table: %s\n", strerror(-ret));
		goto err_kvm;
	}
	sluice_serial_init(&vm, STDIN_FILENO, STDOUT_FILENO);
	ret = sluice_vcpus_create(&vm);
	if (ret)
		goto err_serial;

	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);
	ret = pthread_create(&sig_thread, NULL, signal_thread, &vm);
	if (ret) {
		fprintf(stderr, "sluice: cannot start the signal thread: %s\n", strerror(ret));
		ret = -ret;
		goto err_vcpus;
	}
	pthread_detach(sig_thread);

	if (vm.serial.in_fd >= 0 && isatty(vm.serial.in_fd) && tcgetattr(vm.serial.in_fd, &saved_tty) == 0) {
		raw_tty = saved_tty;
		cfmakeraw(&raw_tty);
		raw_tty.c_lflag |= ISIG;	/* Ctrl-C still ends sluice */
		raw_tty.c_oflag |= OPOST | ONLCR;
		tty_raw = tcsetattr(vm.serial.in_fd, TCSANOW, &raw_tty) == 0;
	}
	ret = sluice_serial_start_input(&vm);
	if (ret)
		fprintf(stderr, "sluice: no serial input: %s\n", strerror(-ret));
	ret = sluice_vcpus_start(&vm);
	if (ret)
		sluice_vm_request_exit(&vm, 1, "cannot start the vCPUs: %s", strerror(-ret));

	pthread_mutex_lock(&vm.exit_lock);
	while (!vm.exit_requested)
		pthread_cond_wait(&vm.exit_cond, &vm.exit_lock);
	pthread_mutex_unlock(&vm.exit_lock);

	sluice_vcpus_stop(&vm);
	sluice_serial_exit(&vm);
	if (tty_raw)
		tcsetattr(vm.serial.in_fd, TCSANOW, &saved_tty);
	sluice_vcpus_destroy(&vm);
	sluice_kvm_exit(&vm);
	if (vm.exit_status)
		fprintf(stderr, "sluice: %s\n", vm.exit_reason);
	return vm.exit_status;

err_vcpus:
	sluice_vcpus_destroy(&vm);
err_serial:
	sluice_serial_exit(&vm);
err_kvm:
	sluice_kvm_exit(&vm);
	return 1;
}
