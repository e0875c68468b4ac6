// SPDX-License-Identifier: GPL-2.0-only
//
// sipedge's in-kernel RTP forwarder: a tc (TCX) ingress program that forwards
// the RTP of locked relay legs without waking user space.
//
// The relay in user space does everything that needs judgement: it latches,
// checks every packet until a leg is locked, and only then installs an entry
// for (peer address, relay port) -> (relay's other port, other peer). This
// program forwards exactly the packets that match such an entry, come from
// the locked source, carry the expected SSRC and keep a plausible sequence;
// everything else (other sources, RTCP, STUN, a new SSRC, a sequence jump,
// IP options, fragments, GRO packets, IPv6) goes on to the relay's socket
// as if this program were not there, and the relay decides.
//
// Build: relay/kernfwd/gen.sh (clang -target bpf); the object is committed.

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/pkt_cls.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

// Matches the Go types in kernfwd.go byte for byte.
struct fwd_key {
	__u32 saddr; // the locked peer's address (network order)
	__u16 sport; // its port (network order)
	__u16 dport; // the relay port it sends to (network order)
};

struct fwd_val {
	// Set by user space.
	__u32 daddr;     // relay address the packet must be sent to; 0 = any
	__u32 new_saddr; // relay address facing the other side
	__u32 new_daddr; // the other side's latched address
	__u16 new_sport; // relay port facing the other side (network order)
	__u16 new_dport; // the other side's latched port (network order)
	__u32 ifindex;   // egress interface; 0 = the destination is local
	__u32 ssrc;      // expected SSRC (network order)
	__u32 rate;      // RTP clock rate, for jitter
	__u32 flags;     // reserved, 0

	// Updated here (and read by user space).
	__u64 packets;
	__u64 bytes; // UDP payload bytes
	__u64 last_ns; // bpf_ktime_get_ns() of the last forwarded packet
	__u32 ext_max; // RFC 3550 A.1: cycles | max_seq
	__u32 jitter;  // RFC 3550 A.8: J * 16, in RTP units
	__s32 transit;
	__u32 have_transit;
	__u64 punted; // packets from the locked source left to user space
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct fwd_key);
	__type(value, struct fwd_val);
} sipedge_fwd SEC(".maps");

#define MAX_DROPOUT 3000
#define MAX_MISORDER 100
#define MAX_PACKET 4096 // the relay's receive buffer; larger goes up and is dropped there

#define IP_CSUM_OFF (ETH_HLEN + offsetof(struct iphdr, check))
#define IP_TTL_OFF (ETH_HLEN + offsetof(struct iphdr, ttl))
#define IP_SRC_OFF (ETH_HLEN + offsetof(struct iphdr, saddr))
#define UDP_OFF (ETH_HLEN + sizeof(struct iphdr))
#define UDP_CSUM_OFF (UDP_OFF + offsetof(struct udphdr, check))
#define RTP_OFF (UDP_OFF + sizeof(struct udphdr))

// Packets this program does not forward go on unchanged: TC_ACT_UNSPEC is
// "next program" under TCX (and "continue" for cls_bpf), so other tc
// programs on the interface (another sipedge, Cilium) still see them.
#define NEXT TC_ACT_UNSPEC

static __always_inline int punt(struct fwd_val *v)
{
	__sync_fetch_and_add(&v->punted, 1);
	return NEXT;
}

SEC("tc")
int sipedge_rtp(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;

	if (skb->protocol != bpf_htons(ETH_P_IP) || skb->gso_size != 0)
		return NEXT;
	// Ethernet + IPv4 without options + UDP + RTP fixed header, in the
	// linear part of the skb (the rewrite helpers work on the rest).
	if (data + RTP_OFF + 12 > end) {
		if (skb->len < RTP_OFF + 12 || bpf_skb_pull_data(skb, RTP_OFF + 12) != 0)
			return NEXT;
		data = (void *)(long)skb->data;
		end = (void *)(long)skb->data_end;
		if (data + RTP_OFF + 12 > end)
			return NEXT;
	}
	struct ethhdr *eth = data;
	struct iphdr *ip = data + ETH_HLEN;
	struct udphdr *udp = data + UDP_OFF;
	__u8 *rtp = data + RTP_OFF;
	if (eth->h_proto != bpf_htons(ETH_P_IP) || ip->ihl != 5 || ip->version != 4 ||
	    ip->protocol != IPPROTO_UDP || (ip->frag_off & bpf_htons(0x3fff)) != 0)
		return NEXT;

	struct fwd_key key = {
		.saddr = ip->saddr,
		.sport = udp->source,
		.dport = udp->dest,
	};
	struct fwd_val *v = bpf_map_lookup_elem(&sipedge_fwd, &key);
	if (!v)
		return NEXT;
	if (v->daddr != 0 && v->daddr != ip->daddr)
		return NEXT; // another local address: not this leg's socket

	__u32 ulen = bpf_ntohs(udp->len);
	if (ulen < sizeof(struct udphdr) + 12 || ulen > MAX_PACKET ||
	    ulen > skb->len - UDP_OFF)
		return punt(v);
	// RTP version 2, not RTCP (rtcp-mux: second byte 192..223), the locked SSRC.
	if ((rtp[0] >> 6) != 2 || (rtp[1] >= 192 && rtp[1] <= 223))
		return punt(v);
	__u32 ssrc = *(__u32 *)(rtp + 8);
	if (ssrc != v->ssrc)
		return punt(v);

	// RFC 3550 A.1: a jump the relay's own statistics would treat as a
	// restart goes to user space, which then takes the leg back.
	__u16 seq = bpf_ntohs(*(__u16 *)(rtp + 2));
	__u32 ext = v->ext_max;
	__u16 max_seq = (__u16)ext;
	__u16 udelta = seq - max_seq;
	if (udelta < MAX_DROPOUT) {
		if (seq < max_seq)
			ext += 0x10000;
		v->ext_max = (ext & 0xffff0000) | seq;
	} else if (udelta <= 0xffff - MAX_MISORDER + 1) {
		return punt(v);
	}
	// else: a duplicate or a reordered packet; counted, forwarded.

	// RFC 3550 A.8 interarrival jitter, arrival in RTP clock units.
	__u64 now = bpf_ktime_get_ns();
	__u32 rate = v->rate ? v->rate : 8000;
	__u32 arrival = (__u32)((now / 1000) * rate / 1000000);
	__s32 transit = (__s32)(arrival - bpf_ntohl(*(__u32 *)(rtp + 4)));
	if (v->have_transit) {
		__s32 d = transit - v->transit;
		if (d < 0)
			d = -d;
		v->jitter += (__u32)d - ((v->jitter + 8) >> 4);
	}
	v->transit = transit;
	v->have_transit = 1;

	__sync_fetch_and_add(&v->packets, 1);
	__sync_fetch_and_add(&v->bytes, ulen - sizeof(struct udphdr));
	v->last_ns = now;

	// Rewrite to (relay's other port -> other peer). The helpers keep the
	// checksums right whatever state the skb's checksum is in.
	__u32 old_addrs[2] = {ip->saddr, ip->daddr};
	__u32 new_addrs[2] = {v->new_saddr, v->new_daddr};
	__u32 old_ports = *(__u32 *)&udp->source;
	__u16 new_ports_h[2] = {v->new_sport, v->new_dport};
	__u32 new_ports = *(__u32 *)new_ports_h;
	__u32 ifindex = v->ifindex;
	__u16 old_ttl_word = *(__u16 *)&ip->ttl;

	bpf_l4_csum_replace(skb, UDP_CSUM_OFF, old_addrs[0], new_addrs[0],
			    BPF_F_PSEUDO_HDR | BPF_F_MARK_MANGLED_0 | 4);
	bpf_l4_csum_replace(skb, UDP_CSUM_OFF, old_addrs[1], new_addrs[1],
			    BPF_F_PSEUDO_HDR | BPF_F_MARK_MANGLED_0 | 4);
	bpf_l4_csum_replace(skb, UDP_CSUM_OFF, old_ports, new_ports,
			    BPF_F_MARK_MANGLED_0 | 4);
	bpf_l3_csum_replace(skb, IP_CSUM_OFF, old_addrs[0], new_addrs[0], 4);
	bpf_l3_csum_replace(skb, IP_CSUM_OFF, old_addrs[1], new_addrs[1], 4);
	bpf_skb_store_bytes(skb, IP_SRC_OFF, new_addrs, sizeof(new_addrs), 0);
	bpf_skb_store_bytes(skb, UDP_OFF, &new_ports, sizeof(new_ports), 0);

	if (ifindex == 0)
		return TC_ACT_OK; // local destination: up the stack to its socket

	// A new packet from the relay: a fresh TTL, out through the egress
	// interface, with the neighbour (MAC) resolved by the kernel.
	__u16 new_ttl_word = old_ttl_word;
	((__u8 *)&new_ttl_word)[0] = 64;
	bpf_l3_csum_replace(skb, IP_CSUM_OFF, old_ttl_word, new_ttl_word, 2);
	bpf_skb_store_bytes(skb, IP_TTL_OFF, &new_ttl_word, sizeof(new_ttl_word), 0);
	return bpf_redirect_neigh(ifindex, 0, 0, 0);
}

char LICENSE[] SEC("license") = "GPL";
