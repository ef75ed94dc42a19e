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

#include <sys/eventfd.h>

#include <glib-unix.h>
#include <glib.h>

#include "aio.h"
#include "block.h"
#include "control.h"
#include "iothread.h"
#include "pci.h"
#include "util.h"
#include "virtio-blk.h"
#include "vmm.h"

#define EXIT_USAGE	2

enum {
	OPT_DRIVE = 0x100,
	OPT_IOTHREAD,
	OPT_CONTROL,
	OPT_KERNEL_CACHE,
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
	{ "kernel-cache", required_argument, NULL, OPT_KERNEL_CACHE },
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
		"      --kernel-cache DIR|off\n"
		"                        where the decompressed kernel is kept, so that the next boot of the\n"
		"                        same bzImage skips decompressing it (default $XDG_CACHE_HOME/sluice\n"
		"                        or ~/.cache/sluice, when it can be made; off: no cache)\n"
		"  -c, --cpus N          vCPUs, 1-%d (default 1)\n"
		"  -m, --mem SIZE        guest RAM with a k/M/G suffix; a bare number is MiB (default 256M,\n"
		"                        at least 16M; RAM above 3G appears above 4G)\n"
		"      --drive SPEC      a virtio-blk disk (virtio-pci, MSI-X); several allowed. SPEC is\n"
		"                        file=PATH,format=raw|qcow2[,id=NAME][,dataplane=user|kernel|auto]\n"
		"                        [,queues=N][,queue-size=N][,iothread=NAME[:NAME...]]\n"
		"                        [,cache=none|writeback][,readonly=on][,notify=auto|pio|mmio]\n"
		"                        queues: 1-16 (default: one per vCPU); queue-size: power of 2, 4-1024\n"
		"                        (default 256); iothread: the queues go round-robin over these\n"
		"                        (default: over every --iothread); cache=none is O_DIRECT;\n"
		"                        dataplane=kernel: the queues are served by sluice_blk.ko (fails\n"
		"                        when it is not loaded); auto: the module when loaded, else user;\n"
		"                        notify: how the guest kicks a queue, a port write (pio) or an\n"
		"                        MMIO write; auto: pio on AMD hosts, where KVM decodes MMIO\n"
		"                        writes in its instruction emulator\n"
		"      --iothread id=NAME an IOThread (an event loop thread serving queues); several allowed;\n"
		"                        with --drive and no --iothread, one called iothread0 is made\n"
		"      --control PATH    a unix socket (mode 0600) taking one JSON command per line:\n"
		"                        query-status, query-iothreads, query-block, set-queue-iothread,\n"
		"                        inject-nmi, quit\n"
		"                        (client: sluice-ctl)\n"
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
		case OPT_DRIVE: {
			char *err = NULL;

			if (cfg->nr_drives == SLUICE_MAX_DRIVES) {
				fprintf(stderr, "sluice: at most %d --drive\n", SLUICE_MAX_DRIVES);
				return EXIT_USAGE;
			}
			if (sluice_drive_opts_parse(optarg, &cfg->drives[cfg->nr_drives], &err)) {
				fprintf(stderr, "sluice: %s\n", err);
				g_free(err);
				return EXIT_USAGE;
			}
			cfg->nr_drives++;
			break;
		}
		case OPT_IOTHREAD: {
			const char *id = strncmp(optarg, "id=", 3) ? optarg : optarg + 3;
			unsigned int i;

			if (!*id || strchr(id, ',') || strchr(id, ':') || strlen(id) > 31) {
				fprintf(stderr, "sluice: --iothread '%s': expected id=NAME (1-31 characters, no ',' ':')\n",
					optarg);
				return EXIT_USAGE;
			}
			for (i = 0; i < cfg->nr_iothreads; i++) {
				if (!strcmp(cfg->iothreads[i], id)) {
					fprintf(stderr, "sluice: --iothread id=%s given twice\n", id);
					return EXIT_USAGE;
				}
			}
			if (cfg->nr_iothreads == SLUICE_MAX_IOTHREADS) {
				fprintf(stderr, "sluice: at most %d --iothread\n", SLUICE_MAX_IOTHREADS);
				return EXIT_USAGE;
			}
			cfg->iothreads[cfg->nr_iothreads++] = id;
			break;
		}
		case OPT_KERNEL_CACHE:
			if (!*optarg) {
				fprintf(stderr, "sluice: --kernel-cache: expected a directory or 'off'\n");
				return EXIT_USAGE;
			}
			cfg->kernel_cache = optarg;
			break;
		case OPT_CONTROL:
			cfg->control = optarg;
			break;
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

/* Main thread (GLib watch on vm->exit_fd): an exit was requested; leave the main loop. */
static gboolean exit_requested(gint fd, GIOCondition cond, gpointer opaque)
{
	g_main_loop_quit(opaque);
	return G_SOURCE_REMOVE;
}

/* Main thread: check the kernel file before touching /dev/kvm, so that a bad file says so. */
static int check_kernel(const char *path)
{
	FILE *f = fopen(path, "rb");
	uint8_t hdr[0x400];
	const char *why;
	long size;
	size_t n;

	if (!f) {
		fprintf(stderr, "sluice: cannot open %s: %s\n", path, strerror(errno));
		return -1;
	}
	n = fread(hdr, 1, sizeof(hdr), f);
	fseek(f, 0, SEEK_END);
	size = ftell(f);
	fclose(f);
	if (sluice_bzimage_check(hdr, n, size < 0 ? 0 : size, &why)) {
		fprintf(stderr, "sluice: %s %s\n", path, why);
		return -1;
	}
	return 0;
}

/* Main thread: the IOThreads (named ones, or iothread0 when disks need one) and the disks. */
static int devices_create(struct sluice_vm *vm, struct sluice_config *cfg)
{
	struct sluice_vblk *vblk;
	unsigned int i;
	char *err = NULL;

	for (i = 0; i < cfg->nr_iothreads; i++) {
		if (!sluice_iothread_new(cfg->iothreads[i])) {
			fprintf(stderr, "sluice: cannot start IOThread %s: %s\n", cfg->iothreads[i], strerror(errno));
			return -1;
		}
	}
	if (cfg->nr_drives && !cfg->nr_iothreads && !sluice_iothread_new("iothread0")) {
		fprintf(stderr, "sluice: cannot start an IOThread: %s\n", strerror(errno));
		return -1;
	}
	for (i = 0; i < cfg->nr_drives; i++) {
		if (sluice_vblk_create(vm, cfg->drives[i], &vblk, &err)) {
			fprintf(stderr, "sluice: %s\n", err);
			g_free(err);
			return -1;
		}
		cfg->drives[i] = NULL;	/* the disk owns its options now */
	}
	return 0;
}

/* Main thread, vCPUs stopped: disks first (they stop their queues in the IOThreads), then the threads. */
static void devices_destroy(struct sluice_config *cfg)
{
	struct sluice_iothread *t;
	unsigned int i;

	while (sluice_vblk_first()) {
		struct sluice_vblk *v = sluice_vblk_first();
		struct sluice_drive_opts *o = v->opts;

		sluice_vblk_destroy(v);
		sluice_drive_opts_free(o);
	}
	for (i = 0; i < cfg->nr_drives; i++)
		sluice_drive_opts_free(cfg->drives[i]);
	while ((t = sluice_iothread_next(NULL)))
		sluice_iothread_free(t);
}

int main(int argc, char **argv)
{
	static struct sluice_vm vm = { .kvm_fd = -1, .vm_fd = -1, .exit_fd = -1 };
	struct sluice_config cfg = { 0 };
	struct sluice_control *control = NULL;
	struct termios saved_tty, raw_tty;
	bool tty_raw = false;
	pthread_t sig_thread;
	GMainLoop *loop;
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
	if (check_kernel(cfg.kernel))
		return 1;
	vm.exit_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (vm.exit_fd < 0) {
		fprintf(stderr, "sluice: eventfd: %s\n", strerror(errno));
		return 1;
	}

	/* Signals go to the signal thread: block them before any thread (IOThreads included) starts. */
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);

	if (sluice_kvm_init(&vm, &cfg))
		return 1;
	sluice_irq_init(&vm);
	/* The block layer's main loop lives on this thread, dispatched by the GLib loop below. */
	g_source_attach(sluice_aio_get_g_source(sluice_block_main_ctx()), NULL);
	ret = sluice_pci_init(&vm);
	if (ret) {
		fprintf(stderr, "sluice: cannot create the PCI bus: %s\n", strerror(-ret));
		goto err_kvm;
	}
	if (devices_create(&vm, &cfg))
		goto err_devices;
	ret = sluice_boot_load(&vm, &cfg, err, sizeof(err));
	if (ret) {
		fprintf(stderr, "sluice: %s\n", err);
		goto err_devices;
	}
	ret = sluice_mptable_write(&vm);
	if (ret) {
		fprintf(stderr, "sluice: cannot write the MP table: %s\n", strerror(-ret));
		goto err_devices;
	}
	if (cfg.control) {
		char *cerr = NULL;

		control = sluice_control_new(&vm, cfg.control, &cerr);
		if (!control) {
			fprintf(stderr, "sluice: %s\n", cerr);
			g_free(cerr);
			goto err_devices;
		}
	}
	sluice_serial_init(&vm, STDIN_FILENO, STDOUT_FILENO);
	sluice_i8042_init(&vm);
	ret = sluice_vcpus_create(&vm);
	if (ret)
		goto err_serial;
	sluice_ioport_coalesce(&vm);	/* an optimisation: without it every port write exits */

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

	/* The main loop: control socket, block layer main ctx; ends on an exit request. */
	loop = g_main_loop_new(NULL, FALSE);
	g_unix_fd_add(vm.exit_fd, G_IO_IN, exit_requested, loop);
	g_main_loop_run(loop);
	g_main_loop_unref(loop);

	sluice_vcpus_stop(&vm);
	sluice_serial_exit(&vm);
	sluice_i8042_exit(&vm);
	if (tty_raw)
		tcsetattr(vm.serial.in_fd, TCSANOW, &saved_tty);
	sluice_vcpus_destroy(&vm);
	sluice_control_free(control);
	devices_destroy(&cfg);
	sluice_pci_exit(&vm);
	sluice_kvm_exit(&vm);
	if (vm.exit_status)
		fprintf(stderr, "sluice: %s\n", vm.exit_reason);
	return vm.exit_status;

err_vcpus:
	sluice_vcpus_destroy(&vm);
err_serial:
	sluice_serial_exit(&vm);
	sluice_i8042_exit(&vm);
	sluice_control_free(control);
err_devices:
	devices_destroy(&cfg);
	sluice_pci_exit(&vm);
err_kvm:
	sluice_kvm_exit(&vm);
	return 1;
}
