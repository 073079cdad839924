/*
 * mcpgatectl's commands, one file each (tools/mcpgatectl/<command>.c);
 * main.c picks one by name. The same binary is kubectl-mcpgate: argv[0]
 * decides how the command name is found (see main.c).
 *
 * Each command takes the argv that starts at its own name (argv[0] is the
 * command, argv[1] its first option) and returns the exit status: 0
 * success, 1 the operation failed, 2 usage (one line on stderr).
 */
#ifndef MCPGATECTL_CTL_H
#define MCPGATECTL_CTL_H

typedef int ctl_cmd_fn(int argc, char **argv);

/** `status [--pin-dir DIR]`: is interception installed; counters. */
int ctl_status(int argc, char **argv);
/** `uninstall [--pin-dir DIR]`: detach the eBPF programs, unpin all. */
int ctl_uninstall(int argc, char **argv);
/** `eks-token --cluster C ...`: an ExecCredential, as `aws eks get-token`. */
int ctl_eks_token(int argc, char **argv);
/** `mask [--path URL] ...`: mask stdin to stdout as the proxy would. */
int ctl_mask(int argc, char **argv);
/** `sockets cut --pod-cgroup DIR ...`: reset a pod's API connections. */
int ctl_sockets(int argc, char **argv);

/**
 * For commands whose only option is `--pin-dir DIR`: sets <*pin_dir> from
 * argv[1..]. Returns 0, or -1 for anything else in argv.
 */
int ctl_pin_dir(int argc, char **argv, const char **pin_dir);

/** Prints the usage of every command to stderr; returns 2. */
int ctl_usage(void);

#endif /* MCPGATECTL_CTL_H */
