# vccp-rank/: the checkpoint protocol, receive queue, manifest and the
# vcluster-ckpt inspector.  Linked into vcluster-launch.
VCCP_SRCS := vccp-rank/vccp.c vccp-rank/rq.c vccp-rank/manifest.c
