# XLA flag presets per platform. Source it before a run (it appends to what is already set):
#   source launch/xla_flags.sh gpu        # or: cpu | gpu_debug | tpu
#   bash launch/xla_flags.sh gpu          # just prints the flags
# Presets (every XLA_FLAGS entry below is checked to parse in the installed jaxlib by
# tests/test_launch.py; an unknown flag makes XLA abort at startup, so re-check after upgrades):
#   cpu        single-threaded Eigen per process: several launch.local processes on a few cores
#              then do not oversubscribe them (the fake device count is set by launch.local).
#   gpu        latency-hiding scheduler (overlaps collectives with compute), pipelined and
#              combined collectives (fewer, larger NCCL calls for FSDP gathers/reductions),
#              while-loop double buffering (scan_layers), CUDA-graph command buffers.
#   gpu_debug  gpu without command buffers (easier profiles, dynamic-shape debugging).
#   tpu        libtpu flags (LIBTPU_INIT_ARGS, not XLA_FLAGS): async collective fusion and
#              compute/collective overlap, as MaxText uses; not checkable without a TPU.
_zero24_preset="${1:-}"
_zero24_gpu="--xla_gpu_enable_latency_hiding_scheduler=true
--xla_gpu_enable_pipelined_all_gather=true
--xla_gpu_enable_pipelined_reduce_scatter=true
--xla_gpu_enable_pipelined_all_reduce=true
--xla_gpu_all_gather_combine_threshold_bytes=134217728
--xla_gpu_reduce_scatter_combine_threshold_bytes=134217728
--xla_gpu_all_reduce_combine_threshold_bytes=134217728
--xla_gpu_enable_while_loop_double_buffering=true"
_zero24_xla=""
_zero24_libtpu=""
case "${_zero24_preset}" in
  cpu) _zero24_xla="--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1" ;;
  gpu) _zero24_xla="${_zero24_gpu}
--xla_gpu_enable_command_buffer=FUSION,CUBLAS,CUDNN,CUSTOM_CALL" ;;
  gpu_debug) _zero24_xla="${_zero24_gpu}
--xla_gpu_enable_command_buffer=" ;;
  tpu) _zero24_libtpu="--xla_tpu_enable_async_collective_fusion=true
--xla_tpu_enable_async_collective_fusion_fuse_all_gather=true
--xla_tpu_enable_async_collective_fusion_multiple_steps=true
--xla_tpu_overlap_compute_collective_tc=true
--xla_enable_async_all_gather=true
--xla_tpu_enable_data_parallel_all_reduce_opt=true
--xla_tpu_data_parallel_opt_different_sized_ops=true" ;;
  *) echo "usage: source launch/xla_flags.sh cpu|gpu|gpu_debug|tpu (got '${_zero24_preset}')" >&2
     (return 0 2>/dev/null) && return 2 || exit 2 ;;
esac
_zero24_xla="$(echo ${_zero24_xla})"  # newlines -> spaces
_zero24_libtpu="$(echo ${_zero24_libtpu})"
if (return 0 2>/dev/null); then  # sourced: export
  [ -n "${_zero24_xla}" ] && export XLA_FLAGS="${XLA_FLAGS:+${XLA_FLAGS} }${_zero24_xla}"
  [ -n "${_zero24_libtpu}" ] && export LIBTPU_INIT_ARGS="${LIBTPU_INIT_ARGS:+${LIBTPU_INIT_ARGS} }${_zero24_libtpu}"
  unset _zero24_preset _zero24_gpu _zero24_xla _zero24_libtpu
else  # executed: print
  [ -n "${_zero24_xla}" ] && echo "XLA_FLAGS=${_zero24_xla}"
  [ -n "${_zero24_libtpu}" ] && echo "LIBTPU_INIT_ARGS=${_zero24_libtpu}"
fi
true
