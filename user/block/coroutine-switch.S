/* SPDX-License-Identifier: GPL-2.0 */
/* coroutine-switch.S - x86-64 SysV stack switch for coroutines: callee-saved registers + rsp. */

	.text

/*
 * void sluice_co_switch_stack(void **save_sp, void *load_sp)
 * Push the callee-saved registers, store rsp in *save_sp, load load_sp and
 * pop the registers saved there: "ret" resumes the other context.
 */
	.globl	sluice_co_switch_stack
	.hidden	sluice_co_switch_stack
	.type	sluice_co_switch_stack, @function
sluice_co_switch_stack:
	.cfi_startproc
	pushq	%rbp
	pushq	%rbx
	pushq	%r12
	pushq	%r13
	pushq	%r14
	pushq	%r15
	movq	%rsp, (%rdi)
	movq	%rsi, %rsp
	popq	%r15
	popq	%r14
	popq	%r13
	popq	%r12
	popq	%rbx
	popq	%rbp
	ret
	.cfi_endproc
	.size	sluice_co_switch_stack, .-sluice_co_switch_stack

/*
 * First entry of a new stack: sluice_co_stack_init() leaves the coroutine in
 * r12 and the C entry point in rbx; rsp is 16-byte aligned here.
 */
	.globl	sluice_co_trampoline
	.hidden	sluice_co_trampoline
	.type	sluice_co_trampoline, @function
sluice_co_trampoline:
	.cfi_startproc
	.cfi_undefined rip
	movq	%r12, %rdi
	xorl	%ebp, %ebp
	call	*%rbx
	ud2
	.cfi_endproc
	.size	sluice_co_trampoline, .-sluice_co_trampoline

	.section .note.GNU-stack,"",@progbits
