#!/bin/bash
. /work/main/.venv/bin/activate
export D2LEXP_DATA=/work/shared/datasets
# (the code of the commit under test)
cd /tmp/cpusweep
for round in 1 2; do
  /usr/bin/time -f "%e" -o a_$round.time python -m d2lexp -m hydra/launcher=parallel hydra.launcher.devices=cpu hydra.launcher.jobs_per_device=2 hydra.launcher.threads_per_job=1 experiment=d2l/softmax,d2l/mlp,d2l/lenet seed=1,2 hydra.sweep.dir=a_$round > a_$round.log 2>&1
  /usr/bin/time -f "%e" -o b_$round.time python -m d2lexp -m hydra/launcher=parallel hydra.launcher.devices=cpu hydra.launcher.jobs_per_device=1 hydra.launcher.threads_per_job=2 experiment=d2l/softmax,d2l/mlp,d2l/lenet seed=1,2 hydra.sweep.dir=b_$round > b_$round.log 2>&1
done
echo finished > done
