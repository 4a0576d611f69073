#!/bin/bash
# Score a manifest on a Slurm cluster: one array task per shard, one GPU each, at most K at once.
#
#   sbatch --array=0-15%4 docs/slurm.sh /shared/data/manifest.jsonl /shared/data/scores
#
# Every task runs the same command; sciscore reads its shard from SLURM_ARRAY_TASK_ID and the
# array's SLURM_ARRAY_TASK_MIN/_MAX (16 shards here: lines k with k mod 16 == task id) and
# writes OUT_DIR/scores-000II-of-00016.jsonl, under .partial until the shard is complete.
# The array must be a plain range (0-N or 1-N, any %K); a step or a list is refused.
#
# The model folder and the images must be at the same paths on every node: a shared filesystem
# (here /shared), or copy the model to node-local disk first (uncomment the sbcast lines to use
# Slurm's broadcast to /tmp). When every task has finished, merge (same command, once):
#
#   sciscore merge --manifest /shared/data/manifest.jsonl --out /shared/data/scores.jsonl \
#       /shared/data/scores/scores-*-of-00016.jsonl
#
# Exit status 75 (lost GPU, an output that could not be written) requeues the task (at most 3
# times), which
# resumes from its .partial file; 1 (bad model folder or manifest) does not: fix and resubmit.
# A preempted or timed-out task gets SIGTERM (sciscore finishes the pass in flight, exits 75) and
# is requeued by Slurm (--requeue); it resumes the same way.
#SBATCH --job-name=sciscore
#SBATCH --gres=gpu:1
#SBATCH --cpus-per-task=4
#SBATCH --mem=16G
#SBATCH --time=04:00:00
#SBATCH --requeue
#SBATCH --output=sciscore-%A_%a.log
set -u
MANIFEST=${1:?usage: sbatch --array=0-N%K slurm.sh MANIFEST OUT_DIR [MODEL]}
OUT_DIR=${2:?usage: sbatch --array=0-N%K slurm.sh MANIFEST OUT_DIR [MODEL]}
MODEL=${3:-/shared/models/SciScore}
SCISCORE=${SCISCORE:-sciscore}

# Model on node-local disk instead of the shared filesystem:
# sbcast -f --compress "$MODEL/model.safetensors" /tmp/SciScore/model.safetensors ... ; MODEL=/tmp/SciScore

"$SCISCORE" batch --model "$MODEL" --manifest "$MANIFEST" --out "$OUT_DIR/" --batch 32
status=$?
if [ "$status" -eq 75 ] && [ "${SLURM_RESTART_COUNT:-0}" -lt 3 ]; then
    echo "sciscore asks for a retry (exit 75): requeueing array task $SLURM_ARRAY_TASK_ID" >&2
    scontrol requeue "${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}"
fi
exit "$status"
