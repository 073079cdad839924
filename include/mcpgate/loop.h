/*
 * A tiny epoll event loop, in the spirit of Redis's ae: fds with callbacks,
 * periodic timers on timerfds, and nothing else. One loop per thread; no
 * call blocks except mg_loop_run()'s epoll_wait.
 */
#ifndef MCPGATE_LOOP_H
#define MCPGATE_LOOP_H

#include <stdint.h>

struct mg_loop;

/** Called with the epoll <events> (EPOLLIN, EPOLLOUT, EPOLLERR, ...). */
typedef void mg_loop_fd_cb(struct mg_loop *loop, int fd, uint32_t events, void *data);

/** Creates a loop. 0 / -errno. */
int mg_loop_new(struct mg_loop **out);
/** Frees the loop; fds registered in it are not closed. Accepts NULL. */
void mg_loop_free(struct mg_loop *loop);

/** Watches <fd> for <events>; <cb>(<data>) runs when any is ready. 0 / -errno. */
int mg_loop_add_fd(struct mg_loop *loop, int fd, uint32_t events, mg_loop_fd_cb *cb, void *data);
/** Changes the events watched on an added fd. 0 / -errno. */
int mg_loop_mod_fd(struct mg_loop *loop, int fd, uint32_t events);
/** Stops watching <fd> (before closing it). Safe from inside any callback. */
void mg_loop_del_fd(struct mg_loop *loop, int fd);

/** Runs <cb> every <interval_ms>; returns the timer id (>= 0) or -errno. */
int mg_loop_add_timer(struct mg_loop *loop, unsigned interval_ms, mg_loop_fd_cb *cb, void *data);

/** Runs until mg_loop_stop(). 0 / -errno on an epoll failure. */
int mg_loop_run(struct mg_loop *loop);
void mg_loop_stop(struct mg_loop *loop);

#endif /* MCPGATE_LOOP_H */
