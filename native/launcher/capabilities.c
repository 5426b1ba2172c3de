/* capabilities.c — the command's capabilities.
 *
 * The command runs in its own user namespace (userns.c), where it holds every capability over that
 * namespace's objects only. As root inside it keeps them across exec, so the bounding set decides
 * what it has: podman's rootless default (CHOWN, DAC_OVERRIDE, FOWNER, FSETID, KILL,
 * NET_BIND_SERVICE, SETFCAP, SETGID, SETPCAP, SETUID, SYS_CHROOT, and NET_RAW for ping), adjusted by
 * --cap-add / --cap-drop. A non-root command loses them all at exec, as usual.
 */
#include "capabilities.h"

#include "report.h"

#include <errno.h>
#include <linux/capability.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#define BIT(cap) (1ULL << (cap))

static const char *const names[] = {
	"CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID", "SETPCAP",
	"LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST", "NET_ADMIN", "NET_RAW", "IPC_LOCK",
	"IPC_OWNER", "SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT", "SYS_ADMIN",
	"SYS_BOOT", "SYS_NICE", "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD", "LEASE", "AUDIT_WRITE",
	"AUDIT_CONTROL", "SETFCAP", "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG", "WAKE_ALARM", "BLOCK_SUSPEND",
	"AUDIT_READ", "PERFMON", "BPF", "CHECKPOINT_RESTORE",
};

unsigned long long caps_default(void)
{
	return BIT(CAP_CHOWN) | BIT(CAP_DAC_OVERRIDE) | BIT(CAP_FOWNER) | BIT(CAP_FSETID) | BIT(CAP_KILL) |
	       BIT(CAP_NET_BIND_SERVICE) | BIT(CAP_SETFCAP) | BIT(CAP_SETGID) | BIT(CAP_SETPCAP) |
	       BIT(CAP_SETUID) | BIT(CAP_SYS_CHROOT) | BIT(CAP_NET_RAW);
}

unsigned long long caps_bit(const char *name, const char *flag)
{
	const char *bare = strncasecmp(name, "CAP_", 4) == 0 ? name + 4 : name;

	for (unsigned i = 0; i < sizeof names / sizeof names[0]; i++)
		if (strcasecmp(bare, names[i]) == 0)
			return BIT(i);
	if (strcasecmp(bare, "ALL") == 0)
		return ~0ULL;
	fail("EUSAGE", EXIT_SETUP_FAILED, "%s %s: no such capability (names as in capabilities(7), e.g. NET_ADMIN or CAP_NET_ADMIN, or ALL)",
	     flag, name);
}

void caps_restrict(unsigned long long keep)
{
	for (int cap = 0; cap < 64; cap++) {
		if (keep & BIT(cap))
			continue;
		/* EINVAL: past the kernel's last capability; nothing more to drop. */
		if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0) {
			if (errno == EINVAL)
				break;
			fail("EINIT", EXIT_SETUP_FAILED, "dropping capability %d from the bounding set failed (%s)", cap,
			     strerror(errno));
		}
	}
	struct __user_cap_header_struct header = { .version = _LINUX_CAPABILITY_VERSION_3 };
	struct __user_cap_data_struct data[2];
	if (syscall(SYS_capget, &header, data) != 0)
		fail("EINIT", EXIT_SETUP_FAILED, "reading the capability sets failed (%s)", strerror(errno));
	data[0].inheritable = data[1].inheritable = 0;
	if (syscall(SYS_capset, &header, data) != 0 || prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0)
		fail("EINIT", EXIT_SETUP_FAILED, "clearing the inheritable capabilities failed (%s)", strerror(errno));
}
