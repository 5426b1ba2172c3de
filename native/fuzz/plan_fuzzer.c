/* libFuzzer harness for native/launcher/plan.c: plan_parse() on arbitrary command lines.
 *
 * The input is the argument vector after argv[0], one argument per NUL-terminated piece. plan.c
 * reports a bad flag through fail(), which exits the launcher: report_stub.c replaces report.c with
 * a fail() that formats the sentence (so format bugs still show) and longjmps back here. realpath()
 * is renamed for plan.c at compile time (run.sh passes -Drealpath=fuzz_realpath) so the paths it
 * allocates can be freed after each input and LeakSanitizer stays quiet about the ones a failure
 * abandons. Checked after a successful parse: every field stays inside its documented range.
 */
#include <getopt.h>
#include <limits.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../launcher/plan.h"
#include "fuzz_stub.h"

#define MAX_ARGS 256

static char *allocated[MAX_ARGS * 2];
static size_t n_allocated;

char *fuzz_realpath(const char *path, char *resolved)
{
	char *out = realpath(path, resolved);

	if (out && !resolved) {
		if (n_allocated == sizeof allocated / sizeof allocated[0])
			abort(); /* more realpath calls than arguments: plan.c changed, resize */
		allocated[n_allocated++] = out;
	}
	return out;
}

static void free_allocated(void)
{
	while (n_allocated)
		free(allocated[--n_allocated]);
}

static void check(int ok, const char *what)
{
	if (!ok) {
		fprintf(stderr, "plan: %s\n", what);
		abort();
	}
}

static void check_plan(const struct launch_plan *p, int argc)
{
	check(p->n_mounts <= PLAN_MAX_MOUNTS, "n_mounts past PLAN_MAX_MOUNTS");
	check(p->n_resolvers <= PLAN_MAX_RESOLVERS, "n_resolvers past PLAN_MAX_RESOLVERS");
	check(p->net.mtu >= 1280 && p->net.mtu <= 65535, "mtu out of range");
	check(p->net.prefix4 <= 32 && p->net.prefix6 <= 128, "prefix out of range");
	check(!(p->net.mac[0] & 1), "multicast MAC accepted");
	check(p->hostname && p->hostname[0] && strlen(p->hostname) <= HOST_NAME_MAX, "bad hostname accepted");
	check(!p->subuid.count == !p->subgid.count, "--subuid without --subgid, or the other way round");
	check(p->subuid.count <= PLAN_MAX_SUBIDS && p->subgid.count <= PLAN_MAX_SUBIDS, "a range past PLAN_MAX_SUBIDS");
	check(!p->subuid.count || (p->subuid.start > 0 && p->subuid.start + p->subuid.count - 1 < 0xffffffffUL),
	      "a subordinate uid range at 0 or past 2^32-2");
	check(!p->userns_only || p->subuid.count, "--userns-only without the ranges");
	if (p->probe || p->apply_owners || p->remove_tree)
		return;
	check(p->command && p->command[0], "no command");
	for (int i = 0; p->command[i]; i++)
		check(i < argc, "command not NULL-terminated");
	if (p->userns_only)
		return;
	check(p->cwd && p->cwd[0] == '/' && strcmp(p->cwd, "/") != 0, "bad cwd accepted");
	for (size_t i = 0; i < p->n_mounts; i++) {
		check(p->mounts[i].dest && p->mounts[i].dest[0] == '/', "relative mount destination");
		check(p->mounts[i].kind == MOUNT_TMPFS || (p->mounts[i].source && p->mounts[i].source[0] == '/'),
		      "bind mount without an absolute source");
	}
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
	/* One writable copy: plan.c cuts SRC:DEST in place, as it may with the real argv. */
	char *copy = malloc(size + 1);
	char *argv[MAX_ARGS + 2];
	int argc = 0;
	struct launch_plan plan;

	memcpy(copy, data, size);
	copy[size] = '\0';
	argv[argc++] = "tapbox-launcher";
	for (char *p = copy; p < copy + size && argc <= MAX_ARGS; p += strlen(p) + 1)
		argv[argc++] = p;
	argv[argc] = NULL;

	optind = 0; /* glibc: a full getopt re-initialisation for every input */
	if (setjmp(fuzz_fail_jump) == 0) {
		plan_parse(&plan, argc, argv);
		check_plan(&plan, argc);
	}
	free_allocated();
	free(copy);
	return 0;
}
