// SPDX-License-Identifier: GPL-2.0
/* serial.c - a 16550A UART at 0x3f8 (IRQ 4): output to stdout, input from stdin when it is a terminal or a pipe. */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vmm.h"

#define SERIAL_BASE	0x3f8
#define SERIAL_IRQ	4
#define SERIAL_STOP_POLL_MS	100	/* how often a vCPU stuck on full output checks for a stop */

/* Register offsets (DLAB = LCR bit 7 selects DLL/DLM at 0 and 1). */
#define UART_RBR	0	/* read: receive buffer; write: THR */
#define UART_IER	1
#define UART_IIR	2	/* read: IIR; write: FCR */
#define UART_LCR	3
#define UART_MCR	4
#define UART_LSR	5
#define UART_MSR	6
#define UART_SCR	7

#define IER_RDI		0x01
#define IER_THRI	0x02
#define IIR_NO_INT	0x01
#define IIR_THRI	0x02
#define IIR_RDI		0x04
#define IIR_FIFO	0xc0
#define FCR_ENABLE	0x01
#define FCR_CLEAR_RX	0x02
#define LCR_DLAB	0x80
#define MCR_DTR		0x01
#define MCR_RTS		0x02
#define MCR_OUT1	0x04
#define MCR_OUT2	0x08
#define MCR_LOOP	0x10
#define LSR_DR		0x01
#define LSR_THRE	0x20
#define LSR_TEMT	0x40
#define MSR_CTS		0x10
#define MSR_DSR		0x20
#define MSR_RI		0x40
#define MSR_DCD		0x80

/* The interrupt the IIR shows, by priority (received data, then THR empty).  Lock held. */
static uint8_t pending_iir(struct sluice_serial *s)
{
	if ((s->ier & IER_RDI) && s->rx_count)
		return IIR_RDI;
	if ((s->ier & IER_THRI) && s->thri_pending)
		return IIR_THRI;
	return IIR_NO_INT;
}

/* Drive IRQ 4 to match the pending interrupts; an edge for the IOAPIC on each new one. Lock held. */
static void update_irq(struct sluice_serial *s)
{
	bool level = pending_iir(s) != IIR_NO_INT;

	if (level == s->irq_level)
		return;
	s->irq_level = level;
	sluice_irq_line(s->vm, SERIAL_IRQ, level);
}

static void rx_push(struct sluice_serial *s, uint8_t c)
{
	if (s->rx_count == SLUICE_SERIAL_FIFO)
		return;		/* overrun: dropped */
	s->rx[(s->rx_head + s->rx_count) % SLUICE_SERIAL_FIFO] = c;
	s->rx_count++;
}

static uint8_t rx_pop(struct sluice_serial *s)
{
	uint8_t c;

	if (!s->rx_count)
		return 0;
	c = s->rx[s->rx_head];
	s->rx_head = (s->rx_head + 1) % SLUICE_SERIAL_FIFO;
	s->rx_count--;
	pthread_cond_signal(&s->space);
	return c;
}

/*
 * vCPU threads, s->lock held.  One byte to the output; while it is full (a
 * pipe nobody reads) wait for room, but give up once the VM is stopping:
 * the stop kick may come before the wait starts, so the wait polls with a
 * timeout and looks at vm->stopping, and the byte is then dropped.
 */
static void output_byte(struct sluice_serial *s, uint8_t c)
{
	struct pollfd pfd = { .fd = s->out_fd, .events = POLLOUT };
	ssize_t n;

	for (;;) {
		if (s->vm->stopping)
			return;
		n = poll(&pfd, 1, SERIAL_STOP_POLL_MS);
		if (n < 0 && errno != EINTR)
			return;
		if (n <= 0)
			continue;
		/* POLLOUT, or an error/hangup that write() reports. */
		n = write(s->out_fd, &c, 1);
		if (n >= 0 || (errno != EINTR && errno != EAGAIN))
			return;
	}
}

/* vCPU threads, s->lock held. */
static void transmit(struct sluice_serial *s, uint8_t c)
{
	if (s->mcr & MCR_LOOP)
		rx_push(s, c);
	else if (s->out_fd >= 0)
		output_byte(s, c);
	s->thri_pending = true;		/* the THR empties at once */
}

static uint8_t modem_status(struct sluice_serial *s)
{
	uint8_t msr = 0;

	if (!(s->mcr & MCR_LOOP))
		return MSR_DCD | MSR_DSR | MSR_CTS;
	if (s->mcr & MCR_RTS)
		msr |= MSR_CTS;
	if (s->mcr & MCR_DTR)
		msr |= MSR_DSR;
	if (s->mcr & MCR_OUT1)
		msr |= MSR_RI;
	if (s->mcr & MCR_OUT2)
		msr |= MSR_DCD;
	return msr;
}

static void serial_write(struct sluice_serial *s, unsigned int reg, uint8_t v)
{
	bool dlab = s->lcr & LCR_DLAB;

	switch (reg) {
	case UART_RBR:
		if (dlab)
			s->dll = v;
		else
			transmit(s, v);
		break;
	case UART_IER:
		if (dlab) {
			s->dlm = v;
		} else {
			/* Enabling the THR-empty interrupt with the THR empty raises it. */
			if ((v & IER_THRI) && !(s->ier & IER_THRI))
				s->thri_pending = true;
			s->ier = v & 0x0f;
		}
		break;
	case UART_IIR:
		s->fcr = v & 0xc9;
		if (v & FCR_CLEAR_RX) {
			s->rx_count = 0;
			pthread_cond_signal(&s->space);
		}
		break;
	case UART_LCR:
		s->lcr = v;
		break;
	case UART_MCR:
		s->mcr = v & 0x1f;
		break;
	case UART_SCR:
		s->scr = v;
		break;
	default:	/* LSR, MSR: read-only */
		break;
	}
	update_irq(s);
}

static uint8_t serial_read(struct sluice_serial *s, unsigned int reg)
{
	bool dlab = s->lcr & LCR_DLAB;
	uint8_t v = 0xff;

	switch (reg) {
	case UART_RBR:
		v = dlab ? s->dll : rx_pop(s);
		break;
	case UART_IER:
		v = dlab ? s->dlm : s->ier;
		break;
	case UART_IIR:
		v = pending_iir(s);
		if (v == IIR_THRI)
			s->thri_pending = false;	/* reading the IIR acknowledges it */
		if (s->fcr & FCR_ENABLE)
			v |= IIR_FIFO;
		break;
	case UART_LCR:
		v = s->lcr;
		break;
	case UART_MCR:
		v = s->mcr;
		break;
	case UART_LSR:
		v = LSR_THRE | LSR_TEMT | (s->rx_count ? LSR_DR : 0);
		break;
	case UART_MSR:
		v = modem_status(s);
		break;
	case UART_SCR:
		v = s->scr;
		break;
	}
	update_irq(s);
	return v;
}

/* A one-byte access to @port (0x3f8..0x3ff). vCPU threads. */
void sluice_serial_io(struct sluice_vm *vm, uint16_t port, bool is_write, uint8_t *data)
{
	struct sluice_serial *s = &vm->serial;

	pthread_mutex_lock(&s->lock);
	if (is_write)
		serial_write(s, port - SERIAL_BASE, *data);
	else
		*data = serial_read(s, port - SERIAL_BASE);
	pthread_mutex_unlock(&s->lock);
}

/* The input thread: feed stdin into the receive FIFO until EOF or the VM stops. */
static void *serial_input_thread(void *arg)
{
	struct sluice_vm *vm = arg;
	struct sluice_serial *s = &vm->serial;
	uint8_t buf[64];
	ssize_t n, i;

	pthread_setname_np(pthread_self(), "serial-in");
	pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, NULL);
	for (;;) {
		/* Cancellable only while blocked in read(), never with the lock held. */
		pthread_setcancelstate(PTHREAD_CANCEL_ENABLE, NULL);
		n = read(s->in_fd, buf, sizeof(buf));
		pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, NULL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0 || vm->stopping)
			break;
		pthread_mutex_lock(&s->lock);
		for (i = 0; i < n; i++) {
			while (s->rx_count == SLUICE_SERIAL_FIFO && !vm->stopping)
				pthread_cond_wait(&s->space, &s->lock);
			if (vm->stopping)
				break;
			rx_push(s, buf[i]);
			update_irq(s);
		}
		pthread_mutex_unlock(&s->lock);
	}
	return NULL;
}

/* Reset the UART; @in_fd (or -1) feeds its input, @out_fd takes its output. Main thread. */
int sluice_serial_init(struct sluice_vm *vm, int in_fd, int out_fd)
{
	struct sluice_serial *s = &vm->serial;
	struct stat st;

	memset(s, 0, sizeof(*s));
	pthread_mutex_init(&s->lock, NULL);
	pthread_cond_init(&s->space, NULL);
	s->vm = vm;
	s->out_fd = out_fd;
	s->in_fd = -1;
	s->mcr = MCR_OUT2;
	/* Input only from a terminal or a pipe: /dev/null or a file would be odd consoles. */
	if (in_fd >= 0 && (isatty(in_fd) || (fstat(in_fd, &st) == 0 && S_ISFIFO(st.st_mode))))
		s->in_fd = in_fd;
	return 0;
}

/* Start the input thread when there is an input. Main thread. */
int sluice_serial_start_input(struct sluice_vm *vm)
{
	struct sluice_serial *s = &vm->serial;
	int ret;

	if (s->in_fd < 0)
		return 0;
	ret = pthread_create(&s->in_thread, NULL, serial_input_thread, vm);
	if (ret)
		return -ret;
	s->in_thread_started = true;
	return 0;
}

/*
 * Stop the input thread (vm->stopping is set) and release the UART.  The thread may be
 * blocked in read(): it is cancelled, which read() honours.  Main thread.
 */
void sluice_serial_exit(struct sluice_vm *vm)
{
	struct sluice_serial *s = &vm->serial;

	if (s->in_thread_started) {
		pthread_mutex_lock(&s->lock);
		pthread_cond_broadcast(&s->space);
		pthread_mutex_unlock(&s->lock);
		pthread_cancel(s->in_thread);
		pthread_join(s->in_thread, NULL);
		s->in_thread_started = false;
	}
	pthread_cond_destroy(&s->space);
	pthread_mutex_destroy(&s->lock);
}
