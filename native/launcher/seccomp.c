/* seccomp.c — a classic-BPF deny-list for the command, in the spirit of Docker's default profile.
 *
 * Installed last, just before exec, once the sandbox's namespaces and mounts are in place. The
 * filter first checks the architecture in seccomp_data: anything but the launcher's own (x86_64 or
 * aarch64) kills the process, and so do x32 syscall numbers on x86_64 (a second numbering that would
 * bypass every rule). Then, per syscall number:
 *   denied (EPERM)   kernel modules, kexec, reboot, swap, the mount family (mount, umount2,
 *                    pivot_root, move_mount, open_tree, fsopen/fsconfig/fsmount/fspick,
 *                    mount_setattr), setns, keyrings, bpf, perf_event_open, userfaultfd, io_uring,
 *                    acct, the clocks, quotactl, iopl/ioperm, syslog, open_by_handle_at, ...
 *   checked args     ioctl with TIOCSTI or TIOCLINUX (typing into a terminal), clone/unshare with
 *                    CLONE_NEWUSER (a nested user namespace would regain every capability and the
 *                    mount calls with it), personality other than the harmless personas.
 *   ENOSYS           clone3: its flags sit in memory BPF can't read; libc falls back to clone.
 * ptrace stays allowed: the PID namespace holds only the sandbox's own processes, PID 1 is not
 * dumpable, and debuggers (gdb, strace) are legitimate inside a build.
 *
 * --seccomp FILE: one syscall name per line, '#' starts a comment, blank lines are ignored; the
 * names replace the default list as the deny-list (EPERM), with no argument checks. A name that
 * exists only on the other architecture is accepted and has nothing to deny here.
 */
#include "seccomp.h"

#include "report.h"

#include <errno.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/personality.h>
#include <sys/prctl.h>
#include <sched.h>

#if defined(__x86_64__)
#define NATIVE_ARCH AUDIT_ARCH_X86_64
#define NATIVE_NR(entry) ((entry)->x86_64)
#define X32_SYSCALL_BIT 0x40000000
#elif defined(__aarch64__)
#define NATIVE_ARCH AUDIT_ARCH_AARCH64
#define NATIVE_NR(entry) ((entry)->aarch64)
#else
#error "tapbox-launcher's seccomp filter knows x86_64 and aarch64 only"
#endif

#define usage_error(...) fail("EUSAGE", EXIT_SETUP_FAILED, __VA_ARGS__)

static const char *const denied_by_default[] = {
	"acct", "add_key", "bpf", "clock_adjtime", "clock_settime", "create_module", "delete_module",
	"fanotify_init", "finit_module", "fsconfig", "fsmount", "fsopen", "fspick", "get_kernel_syms",
	"init_module", "io_uring_enter", "io_uring_register", "io_uring_setup", "ioperm", "iopl",
	"kexec_file_load", "kexec_load", "keyctl", "lookup_dcookie", "mount", "mount_setattr", "move_mount",
	"nfsservctl", "open_by_handle_at", "open_tree", "perf_event_open", "pivot_root", "query_module",
	"quotactl", "quotactl_fd", "reboot", "request_key", "setns", "settimeofday", "swapoff", "swapon",
	"_sysctl", "syslog", "umount2", "uselib", "userfaultfd", "ustat", "vhangup",
};
static const char *const checked_by_default[] = { "ioctl", "clone", "unshare", "personality" };

static const struct syscall_name *lookup(const char *name)
{
	for (size_t i = 0; i < syscall_table_len; i++)
		if (strcmp(syscall_table[i].name, name) == 0)
			return &syscall_table[i];
	return NULL;
}

static int native_number(const char *name)
{
	const struct syscall_name *entry = lookup(name);
	return entry ? NATIVE_NR(entry) : -1;
}

static void set_rule(struct seccomp_plan *plan, const char *name, enum syscall_rule rule)
{
	int nr = native_number(name);

	if (nr >= 0 && nr < SECCOMP_MAX_SYSCALL)
		plan->rules[nr] = rule;
}

void seccomp_plan_default(struct seccomp_plan *plan)
{
	memset(plan->rules, SYSCALL_ALLOW, sizeof plan->rules);
	plan->enabled = true;
	for (size_t i = 0; i < sizeof denied_by_default / sizeof denied_by_default[0]; i++)
		set_rule(plan, denied_by_default[i], SYSCALL_DENY);
	for (size_t i = 0; i < sizeof checked_by_default / sizeof checked_by_default[0]; i++)
		set_rule(plan, checked_by_default[i], SYSCALL_CHECK_ARGS);
	set_rule(plan, "clone3", SYSCALL_NOSYS);
}

void seccomp_plan_set(struct seccomp_plan *plan, const char *name, enum syscall_rule rule, const char *flag)
{
	if (!lookup(name))
		usage_error("%s %s: no such system call (names as in syscalls(2), e.g. ptrace, io_uring_setup)", flag,
			    name);
	set_rule(plan, name, rule);
}

void seccomp_plan_load(struct seccomp_plan *plan, const char *path)
{
	char line[256];
	unsigned number = 0;
	FILE *file = fopen(path, "re");

	if (!file)
		usage_error("--seccomp %s: %s; give default, off or a file of syscall names", path, strerror(errno));
	memset(plan->rules, SYSCALL_ALLOW, sizeof plan->rules);
	plan->enabled = true;
	while (fgets(line, sizeof line, file)) {
		number++;
		line[strcspn(line, "#")] = '\0';
		char *name = line + strspn(line, " \t");
		name[strcspn(name, " \t\r\n")] = '\0';
		if (name[0] == '\0')
			continue;
		if (!lookup(name))
			usage_error("--seccomp %s, line %u: \"%s\" is not a system call name", path, number, name);
		set_rule(plan, name, SYSCALL_DENY);
	}
	fclose(file);
}

/* ---- the BPF program ---- */

#define MAX_INSNS 1024
#define ARG_LOW(n) (offsetof(struct seccomp_data, args) + 8 * (n)) /* little endian: the low word */

struct program {
	struct sock_filter insns[MAX_INSNS];
	unsigned short len;
};

static void emit(struct program *p, struct sock_filter insn)
{
	if (p->len == MAX_INSNS)
		fail("EINIT", EXIT_SETUP_FAILED, "the seccomp filter grew too large");
	p->insns[p->len++] = insn;
}

#define STMT(code, k) ((struct sock_filter)BPF_STMT(code, k))
#define JUMP(code, k, jt, jf) ((struct sock_filter)BPF_JUMP(code, k, jt, jf))
#define RET(value) STMT(BPF_RET | BPF_K, value)
#define DENY_EPERM (SECCOMP_RET_ERRNO | (EPERM & SECCOMP_RET_DATA))
#define DENY_ENOSYS (SECCOMP_RET_ERRNO | (ENOSYS & SECCOMP_RET_DATA))

/* A self-contained block for one syscall with argument checks; every path ends in RET.
 * Returns false when the syscall has no such block (its rule then becomes a plain deny). */
static bool emit_arg_checks(struct program *p, int nr)
{
	if (nr == native_number("ioctl")) {
		emit(p, STMT(BPF_LD | BPF_W | BPF_ABS, ARG_LOW(1)));
		emit(p, JUMP(BPF_JMP | BPF_JEQ | BPF_K, TIOCSTI, 1, 0));
		emit(p, JUMP(BPF_JMP | BPF_JEQ | BPF_K, TIOCLINUX, 0, 1));
		emit(p, RET(DENY_EPERM));
		emit(p, RET(SECCOMP_RET_ALLOW));
	} else if (nr == native_number("clone") || nr == native_number("unshare")) {
		emit(p, STMT(BPF_LD | BPF_W | BPF_ABS, ARG_LOW(0)));
		emit(p, JUMP(BPF_JMP | BPF_JSET | BPF_K, CLONE_NEWUSER, 0, 1));
		emit(p, RET(DENY_EPERM));
		emit(p, RET(SECCOMP_RET_ALLOW));
	} else if (nr == native_number("personality")) {
		static const unsigned harmless[] = { PER_LINUX, PER_LINUX32, UNAME26, UNAME26 | PER_LINUX32, 0xffffffff };
		unsigned n = sizeof harmless / sizeof harmless[0];
		emit(p, STMT(BPF_LD | BPF_W | BPF_ABS, ARG_LOW(0)));
		for (unsigned i = 0; i < n; i++)
			emit(p, JUMP(BPF_JMP | BPF_JEQ | BPF_K, harmless[i], n - i, 0));
		emit(p, RET(DENY_EPERM));
		emit(p, RET(SECCOMP_RET_ALLOW));
	} else {
		return false;
	}
	return true;
}

static void emit_rule(struct program *p, int nr, enum syscall_rule rule)
{
	unsigned short jump_at = p->len;

	emit(p, JUMP(BPF_JMP | BPF_JEQ | BPF_K, nr, 0, 0));
	if (rule == SYSCALL_CHECK_ARGS && emit_arg_checks(p, nr)) {
		/* fall through */
	} else {
		emit(p, RET(rule == SYSCALL_NOSYS ? DENY_ENOSYS : DENY_EPERM));
	}
	/* Not this syscall: skip the block; A still holds the number. */
	p->insns[jump_at].jf = p->len - jump_at - 1;
}

void seccomp_install(const struct seccomp_plan *plan)
{
	static struct program p;

	if (!plan->enabled)
		return;
	emit(&p, STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)));
	emit(&p, JUMP(BPF_JMP | BPF_JEQ | BPF_K, NATIVE_ARCH, 1, 0));
	emit(&p, RET(SECCOMP_RET_KILL_PROCESS));
	emit(&p, STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)));
#ifdef X32_SYSCALL_BIT
	emit(&p, JUMP(BPF_JMP | BPF_JGE | BPF_K, X32_SYSCALL_BIT, 0, 1));
	emit(&p, RET(SECCOMP_RET_KILL_PROCESS));
#endif
	for (int nr = 0; nr < SECCOMP_MAX_SYSCALL; nr++)
		if (plan->rules[nr] != SYSCALL_ALLOW)
			emit_rule(&p, nr, plan->rules[nr]);
	emit(&p, RET(SECCOMP_RET_ALLOW));

	struct sock_fprog prog = { .len = p.len, .filter = p.insns };
	if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) != 0)
		fail("EINIT", EXIT_SETUP_FAILED, "installing the seccomp filter failed (%s); pass --seccomp off only if "
						    "the kernel lacks seccomp", strerror(errno));
}
