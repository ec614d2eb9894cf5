/*
 * Input to bindgen (build.rs) and, through bindgen's generated extern.c, to the C compiler.
 *
 * It holds only what bindgen cannot produce from DPDK's headers by itself:
 *   - the headers a userspace TCP stack on DPDK 22.11 needs;
 *   - `static inline` helpers for things DPDK exposes as macros or per-lcore variables
 *     (bindgen's wrap_static_fns turns every `static inline` here and in DPDK into a real
 *     exported `<name>__extern` symbol);
 *   - the generated re-exports of flag macros built from function-like macros such as
 *     RTE_BIT64(), which bindgen cannot evaluate (build.rs writes them; bindgen sees them only).
 * No logic: every helper is a one-line accessor.
 */
#ifndef DPDK_SYS_WRAPPER_H
#define DPDK_SYS_WRAPPER_H

#include <rte_config.h>

/* EAL, lcores, time, errors, memory */
#include <rte_common.h>
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_lcore.h>
#include <rte_launch.h>
#include <rte_per_lcore.h>
#include <rte_cycles.h>
#include <rte_pause.h>
#include <rte_malloc.h>
#include <rte_memory.h>
#include <rte_dev.h>
#include <rte_log.h>
#include <rte_version.h>
#include <rte_byteorder.h>

/* Buffers and queues */
#include <rte_mempool.h>
#include <rte_mbuf.h>
#include <rte_mbuf_ptype.h>
#include <rte_ring.h>

/* Ports */
#include <rte_ethdev.h>
#include <rte_eth_ring.h>
#include <rte_flow.h>

/* Wire headers, checksums and software RSS (Toeplitz) */
#include <rte_ether.h>
#include <rte_arp.h>
#include <rte_ip.h>
#include <rte_icmp.h>
#include <rte_tcp.h>
#include <rte_udp.h>
#include <rte_net.h>
#include <rte_thash.h>

/* rte_errno is a per-lcore (thread-local) variable behind a macro: read and write it here. */
static inline int dpdk_sys_errno(void) { return rte_errno; }
static inline void dpdk_sys_set_errno(int value) { rte_errno = value; }

/* rte_pktmbuf_mtod{,_offset}() are macros: the start of the data, plus an offset. */
static inline void *dpdk_sys_pktmbuf_mtod(const struct rte_mbuf *m)
{
	return rte_pktmbuf_mtod(m, void *);
}
static inline void *dpdk_sys_pktmbuf_mtod_offset(const struct rte_mbuf *m, uint16_t off)
{
	return rte_pktmbuf_mtod_offset(m, void *, off);
}

#ifdef DPDK_SYS_BINDGEN
/*
 * RTE_ETH_RSS_*, RTE_ETH_{RX,TX}_OFFLOAD_* and RTE_MBUF_F_* as enumerators of
 * `enum dpdk_sys_flag : uint64_t`, named DPDK_SYS_<macro>; build.rs renames them back to the
 * macro's own name in Rust. Not `static const uint64_t`: bindgen evaluates those as i64 and turns
 * RTE_ETH_RSS_L3_SRC_ONLY (bit 63) into an extern static that does not link. A fixed underlying
 * type is a clang extension in C, so only bindgen (which defines DPDK_SYS_BINDGEN) sees this.
 */
#include "dpdk_sys_consts.h"
#endif

#endif /* DPDK_SYS_WRAPPER_H */
