/* capabilities.h — the command's capability bounding set. */
#ifndef TAPBOX_CAPABILITIES_H
#define TAPBOX_CAPABILITIES_H

/* The set a rootless container keeps (podman's default list). */
unsigned long long caps_default(void);
/* The bit of a capability named CAP_X, X or x; reports EUSAGE for an unknown name. */
unsigned long long caps_bit(const char *name, const char *flag);
/* Drops every capability outside keep from the bounding set, and the inheritable and ambient sets. */
void caps_restrict(unsigned long long keep);

#endif
