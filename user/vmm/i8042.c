// SPDX-License-Identifier: GPL-2.0
/* i8042.c - a minimal PS/2 controller at 0x60/0x64: CTR, self-tests, port enables, reset pulse; no devices behind it. */
#include <pthread.h>
#include <string.h>

#include "vmm.h"

/* Status register (port 0x64, read). */
#define STS_OBF		0x01	/* output buffer full */
#define STS_SYS		0x04	/* system flag (set after a passed self-test) */
#define STS_CMD		0x08	/* the last write went to the command port */
#define STS_UNLOCKED	0x10	/* keyboard not inhibited (no keylock) */
#define STS_AUX		0x20	/* the output byte comes from the aux port */

/* Controller configuration byte. */
#define CTR_KBDINT	0x01
#define CTR_SYS		0x04
#define CTR_KBDDIS	0x10
#define CTR_AUXDIS	0x20
#define CTR_XLATE	0x40

/* Controller commands (port 0x64, write). */
#define CMD_READ_CTR	0x20
#define CMD_WRITE_CTR	0x60
#define CMD_AUX_DISABLE	0xa7
#define CMD_AUX_ENABLE	0xa8
#define CMD_AUX_TEST	0xa9
#define CMD_SELF_TEST	0xaa
#define CMD_KBD_TEST	0xab
#define CMD_KBD_DISABLE	0xad
#define CMD_KBD_ENABLE	0xae
#define CMD_READ_OUTP	0xd0
#define CMD_WRITE_OUTP	0xd1
#define CMD_KBD_LOOP	0xd2
#define CMD_AUX_LOOP	0xd3
#define CMD_AUX_SEND	0xd4
#define CMD_PULSE_RESET	0xfe

#define OUTP_RESET	0x01	/* output port bit 0: 0 resets the CPU */

/* Main thread, before the vCPUs start. */
void sluice_i8042_init(struct sluice_vm *vm)
{
	struct sluice_i8042 *k = &vm->i8042;

	memset(k, 0, sizeof(*k));
	pthread_mutex_init(&k->lock, NULL);
	k->ctr = CTR_KBDINT | CTR_SYS | CTR_XLATE;
	k->outp = OUTP_RESET | 0x02;	/* CPU running, A20 on */
}

/* Main thread, after the vCPUs stopped. */
void sluice_i8042_exit(struct sluice_vm *vm)
{
	pthread_mutex_destroy(&vm->i8042.lock);
}

/* Under k->lock: one byte for the guest to read at 0x60 (a newer one replaces it). */
static void i8042_put(struct sluice_i8042 *k, uint8_t v, bool aux)
{
	k->out = v;
	k->out_full = true;
	k->out_aux = aux;
}

/*
 * Under k->lock: a controller command.  Returns true when the guest asked
 * for a CPU reset.  Commands for devices we do not have get no answer from
 * a device (the loopback of the aux port answers without the aux flag, and
 * the aux interface test reports a stuck clock line), so Linux finds the
 * keyboard port and no aux port without waiting for a timeout.
 */
static bool i8042_command(struct sluice_i8042 *k, uint8_t cmd)
{
	k->pending = 0;
	switch (cmd) {
	case CMD_READ_CTR:
		i8042_put(k, k->ctr, false);
		break;
	case CMD_WRITE_CTR:
	case CMD_WRITE_OUTP:
	case CMD_KBD_LOOP:
	case CMD_AUX_LOOP:
	case CMD_AUX_SEND:
		k->pending = cmd;	/* the parameter follows at 0x60 */
		break;
	case CMD_AUX_DISABLE:
		k->ctr |= CTR_AUXDIS;
		break;
	case CMD_AUX_ENABLE:
		k->ctr &= ~CTR_AUXDIS;
		break;
	case CMD_AUX_TEST:
		i8042_put(k, 0x01, false);	/* clock line stuck low: no aux device */
		break;
	case CMD_SELF_TEST:
		k->ctr |= CTR_SYS;
		i8042_put(k, 0x55, false);
		break;
	case CMD_KBD_TEST:
		i8042_put(k, 0x00, false);
		break;
	case CMD_KBD_DISABLE:
		k->ctr |= CTR_KBDDIS;
		break;
	case CMD_KBD_ENABLE:
		k->ctr &= ~CTR_KBDDIS;
		break;
	case CMD_READ_OUTP:
		i8042_put(k, k->outp, false);
		break;
	default:
		/* 0xf0-0xff pulse output lines; bit 0 clear in the low nibble pulses reset. */
		if (cmd >= 0xf0 && !(cmd & OUTP_RESET))
			return true;
		break;
	}
	return false;
}

/* Under k->lock: a byte written to 0x60.  Returns true for a CPU reset. */
static bool i8042_data(struct sluice_i8042 *k, uint8_t v)
{
	uint8_t cmd = k->pending;

	k->pending = 0;
	switch (cmd) {
	case CMD_WRITE_CTR:
		k->ctr = v;
		break;
	case CMD_WRITE_OUTP:
		k->outp = v;
		return !(v & OUTP_RESET);
	case CMD_KBD_LOOP:
		i8042_put(k, v, false);
		break;
	case CMD_AUX_LOOP:
		/* No aux device: the byte comes back as keyboard data, which Linux reads as "no aux". */
		i8042_put(k, v, false);
		break;
	default:
		/* For the keyboard or the aux device (0xd4): nothing is attached, nothing answers. */
		break;
	}
	return false;
}

/*
 * Port 0x60 or 0x64, one byte.  vCPU threads; takes the controller's lock
 * (a reset request is made after it is dropped).
 */
void sluice_i8042_io(struct sluice_vm *vm, uint16_t port, bool is_write, uint8_t *data)
{
	struct sluice_i8042 *k = &vm->i8042;
	bool reset = false;

	pthread_mutex_lock(&k->lock);
	if (port == SLUICE_I8042_DATA) {
		if (is_write) {
			k->last_cmd = false;
			reset = i8042_data(k, *data);
		} else {
			*data = k->out;
			k->out_full = false;
		}
	} else if (is_write) {
		k->last_cmd = true;
		reset = i8042_command(k, *data);
	} else {
		*data = (k->out_full ? STS_OBF : 0) | (k->out_full && k->out_aux ? STS_AUX : 0) |
			(k->ctr & CTR_SYS ? STS_SYS : 0) | (k->last_cmd ? STS_CMD : 0) | STS_UNLOCKED;
	}
	pthread_mutex_unlock(&k->lock);
	if (reset)
		sluice_vm_request_exit(vm, 0, "guest reset (keyboard controller)");
}
