#!/usr/bin/env bash
# A time-boxed subset of the GPU suite (`make bench-gpu` runs it all) for a short accelerator
# lease: each benchmark gets a wall-clock cap, the whole script at most $BUDGET seconds, and a
# step that fails or runs out of time is logged while the next one runs. Results land in
# benchmarks/results/ (named by device) as usual; with $OUT set (a device lease) the log and a
# tarball of the new results files are copied there.
#
#   bash benchmarks/gpu_check.sh            # GPU sizes
#   SIZE=tiny bash benchmarks/gpu_check.sh  # the same steps at CPU-smoke sizes (rehearsal)
#   ONLY="maml_nav2d env_throughput" bash benchmarks/gpu_check.sh   # some steps only
#   ONLY=pearl_curve BUDGET=570 bash benchmarks/gpu_check.sh   # PEARL cheetah-vel learning curve
#   ONLY="core_throughput duan_long_gru duan_long_transformer duan_long_lru" \
#       bash benchmarks/gpu_check.sh   # memory cores: speed, Duan's n=500 and MDP n=50 cells
#
# On a machine without metajax's dependencies, put their wheels (and metajax's own) in .whl/:
# they are installed to /tmp/site first.
set -u
export PYTHONUNBUFFERED=1
PY=${PY:-python3}
BUDGET=${BUDGET:-570}
SIZE=${SIZE:-gpu}
OUT=${OUT:-/tmp/gpu_check}
mkdir -p "$OUT"
LOG="$OUT/gpu_check.log"
START=$(date +%s)
STAMP=$(mktemp)

if compgen -G ".whl/*.whl" >/dev/null; then
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/site
fi

step() {  # step NAME SECONDS COMMAND...: runs COMMAND with at most SECONDS (and what is left)
    local name=$1 cap=$2
    shift 2
    if [ -n "${ONLY:-}" ] && [[ " $ONLY " != *" $name "* ]]; then
        return
    fi
    local left=$((BUDGET - ($(date +%s) - START)))
    ((cap > left)) && cap=$left
    if ((cap < 15)); then
        echo "=== $name: skipped, budget spent" | tee -a "$LOG"
        return
    fi
    echo "=== $name (at most $cap s): $*" | tee -a "$LOG"
    local t0=$(date +%s)
    timeout --kill-after=5 "$cap" "$@" 2>&1 | grep -v "^Failed to import" | tee -a "$LOG"
    local rc=${PIPESTATUS[0]}
    echo "=== $name: exit $rc after $(($(date +%s) - t0)) s" | tee -a "$LOG"
}

{
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 || true
    $PY -c "
import importlib.metadata as m, jax
def version(name):
    try:
        return m.version(name)
    except m.PackageNotFoundError:
        return 'not installed'
print({p: version(p) for p in ('jax', 'jaxlib', 'flax', 'optax', 'chex', 'orbax-checkpoint', 'gymnax', 'brax', 'mujoco-mjx', 'xminigrid', 'metajax')})
print(jax.devices())"
} 2>&1 | grep -v "^Failed to import" | tee -a "$LOG"

SLUG=$($PY -c "from benchmarks.common import device_slug; print(device_slug())" 2>/dev/null || echo device)
XLAND_CONFIG=benchmarks/configs/rl2_xland_r4_13x13.toml
PEARL_CONFIG=benchmarks/configs/pearl_cheetah_vel.toml
MAML_CONFIG=benchmarks/configs/maml_cheetah_vel.toml
ANT_CONFIG=benchmarks/configs/maml_ant_dir.toml
if [ "$SIZE" = tiny ]; then  # the same configs, shrunk
    TINY=$(mktemp -d)
    XLAND_CONFIG=$TINY/rl2_xland_tiny.toml
    PEARL_CONFIG=$TINY/pearl_cheetah_vel_tiny.toml
    MAML_CONFIG=$TINY/maml_cheetah_vel_tiny.toml
    ANT_CONFIG=$TINY/maml_ant_dir_tiny.toml
    sed -e 's/^num_tasks = .*/num_tasks = 8/' -e 's/^core_size = .*/core_size = 32/' \
        -e 's/^num_minibatches = .*/num_minibatches = 2/' -e 's/horizon = 128/horizon = 8/' \
        benchmarks/configs/rl2_xland_r4_13x13.toml >"$XLAND_CONFIG"
    sed -e 's/^num_train_tasks = .*/num_train_tasks = 4/' -e 's/^num_test_tasks = .*/num_test_tasks = 2\nhorizon = 10/' \
        -e 's/^num_tasks = .*/num_tasks = 2/' -e 's/^batch_size = .*/batch_size = 8/' \
        -e 's/^context_batch_size = .*/context_batch_size = 8/' -e 's/^gradient_steps = .*/gradient_steps = 2/' \
        -e 's/^collect_tasks = .*/collect_tasks = 2/' -e 's/^initial_steps = .*/initial_steps = 20/' \
        -e 's/^prior_steps = .*/prior_steps = 20/' -e 's/^posterior_steps = .*/posterior_steps = 20/' \
        -e 's/^rl_capacity = .*/rl_capacity = 200/' -e 's/^hidden_sizes = .*/hidden_sizes = [16]/' \
        -e 's/^encoder_hidden_sizes = .*/encoder_hidden_sizes = [16]/' -e 's/^eval_episodes = .*/eval_episodes = 1/' \
        benchmarks/configs/pearl_cheetah_vel.toml >"$PEARL_CONFIG"
    shrink_maml() {  # shrink_maml CONFIG: a MAML locomotion config at smoke sizes, on stdout
        sed -e 's/^horizon = .*/horizon = 10/' -e 's/^num_test_tasks = .*/num_test_tasks = 2/' \
            -e 's/^num_tasks = .*/num_tasks = 2/' -e 's/^num_trajectories = .*/num_trajectories = 2/' \
            -e 's/^eval_trajectories = .*/eval_trajectories = 2/' -e 's/^eval_task_chunk = .*/eval_task_chunk = 2/' \
            -e 's/^eval_tasks = .*/eval_tasks = 2/' -e 's/^hidden_sizes = .*/hidden_sizes = [16]/' "$1"
    }
    shrink_maml benchmarks/configs/maml_cheetah_vel.toml >"$MAML_CONFIG"
    shrink_maml benchmarks/configs/maml_ant_dir.toml >"$ANT_CONFIG"
    RL2="--tasks 64 256 --updates 1 --repeats 1 --raw-steps 20"
    MAML="--iterations 2 --time-budget 60"
    XLAND="--updates 1 --repeats 1"
    ENVS="bernoulli-bandit nav2d cheetah-vel --batch 256 --brax-batch 4 --num-steps 10 --max-tasks 64 --brax-max-tasks 16 --brax-scale-factor 16 --repeats 1"
    PEARL_ITERS=1
    CURVE="--iterations 2 --eval-every 1"
    CORES="--cores gru lru --lengths 3 --phase-lengths 3 --tasks 4 --width 8 --updates 1 --minibatches 1 --epochs 1 --stem core_throughput_tiny_$SLUG"
    DUAN="--cells 5x2 --mdp-episodes 2 --num-tasks 4 --num-tasks-long 4 --env-steps 40 --core-size 8 --test-tasks 10 --curve-points 2 --curve-tasks 5 --baselines none"
    DUAN_STEM=duan_rl2_long_tiny
else
    RL2="--tasks 1024 4096 16384 65536 --updates 3 --repeats 2 --raw-steps 200"
    MAML="--iterations 20 --time-budget 30"
    XLAND="--updates 2 --repeats 2"
    ENVS="bernoulli-bandit nav2d maze cheetah-vel --batch 65536 --brax-batch 4096 --num-steps 100 --max-tasks 65536 --brax-max-tasks 4096 --brax-scale-factor 64 --repeats 3"
    PEARL_ITERS=3
    # the curve's training stops 90 s before its step cap: compile, init and evaluations
    CURVE="--iterations 500 --eval-every 10 --time-budget $((${CURVE_SECONDS:-480} - 90))"
    CORES="--lengths 100 10 500 --tasks 1024 --width 128 --updates 2 --repeats 2 --stem core_throughput_$SLUG"
    # Duan's long cells at one env-step budget per core (2e7: ~40 updates of 1024 500-step trials)
    DUAN="--cells 500x5 --mdp-episodes 50 --num-tasks-long 1024 --env-steps ${DUAN_STEPS:-2e7} --curve-points 4"
    DUAN_STEM=duan_rl2_long
fi

# shellcheck disable=SC2086  # the size flags are word lists
{
    step rl2_throughput 90 $PY -m benchmarks.rl2_throughput $RL2
    step maml_nav2d 100 $PY -m benchmarks.maml_nav2d $MAML
    step xland_rl2 100 $PY -m benchmarks.learner_throughput --learners --tag xland $XLAND \
        --config "$XLAND_CONFIG"
    step env_throughput 100 $PY benchmarks/env_throughput.py $ENVS
    step pearl_cheetah_vel 120 $PY -m benchmarks.pearl_point_robot --chunk 1 \
        --iterations $PEARL_ITERS --configs "$PEARL_CONFIG"
    step maml_cheetah_vel 90 $PY -m benchmarks.maml_nav2d --iterations 1 --time-budget 30 \
        --config "$MAML_CONFIG"
    step maml_ant_dir 90 $PY -m benchmarks.maml_nav2d --iterations 1 --time-budget 30 \
        --config "$ANT_CONFIG"
    # return on held-out tasks against env steps (the paper's Fig. 3 axis), saved at every point
    step pearl_curve "${CURVE_SECONDS:-480}" $PY -m benchmarks.pearl_point_robot --chunk 1 \
        $CURVE --configs "$PEARL_CONFIG" --stem "pearl_cheetah_vel_curve_$SLUG"
    # memory cores (issue 14): train env-steps/s and compile time per core and trial length
    step core_throughput 300 $PY -m benchmarks.core_throughput $CORES
    # Duan's n = 500 (k = 5) bandit and MDP n = 50 cells, one step per core, then the curves
    for core in ${DUAN_CORES:-gru transformer lru}; do
        step "duan_long_$core" "${DUAN_SECONDS:-200}" $PY -m benchmarks.duan_rl2 $DUAN \
            --core "$core" --stem "${DUAN_STEM}_${core}_$SLUG" --work-dir "/tmp/duan_rl2_$core"
    done
    step duan_long_plot 30 $PY -m benchmarks.duan_rl2 --plot
}

find benchmarks/results -type f -newer "$STAMP" -print | tee -a "$LOG"
find benchmarks/results -type f -newer "$STAMP" -print0 | tar czf "$OUT/results.tgz" --null -T -
echo "=== total $(($(date +%s) - START)) s" | tee -a "$LOG"
