"""`lmforge run RECIPE.yaml`: a declarative pipeline of steps, cached by content hash.

A recipe names its steps; each maps to the library function its `lmforge` command calls:

    # lmforge run recipes/example.yaml
    name: example                  # run folder: $LMFORGE_HOME/runs/example/
    steps:
      base:                        # a step id (letters, digits, '_', '-')
        step: load                 # its type (may be left out when the id is the type)
        model: default
      tuned:
        step: tune                 # keys: the step's arguments + its config dataclass
        model: ${base}             # ${ID}: what step ID produced (an artifact name or a path)
        data: quickstart
        max_steps: 20
      eval-tuned:
        step: evaluate
        model: ${tuned}
        suite: quickstart

- `${ID}` stands for step ID's output: the name of the artifact it wrote (load, tune,
  merge, quantize, prune, distill) or the path of the file it wrote (evaluate: the result
  JSON, feedback: the JSONL, gate: its decision, export: the file). The references make the
  graph; steps run in the recipe's order, moved only where a reference requires. In a
  YAML flow list quote them (`["${a}", "${b}"]`: `{` is YAML syntax), or write a block list.
- An artifact-writing step writes `out` if given, else `RECIPE-ID` (`example-tuned`).
- A step is skipped when its key (sha256 of its type, resolved values, the digests of what
  it reads and the lmforge version) matches the last successful run's and its output is
  still there unchanged; a changed step runs again, and so does what reads it.
- A `gate` compares two eval results on a metric; steps that read a closed gate do not run.
- Every problem of a recipe (unknown step or key, missing key, wrong kind, unknown
  reference, cycle, missing artifact) is reported with its line before anything runs.

Step types: `STEPS` (`pipeline/steps.py`, `pipeline/feedback_loop.py`); `register_step` adds one.
"""

from lmforge.pipeline import feedback_loop as _feedback_loop  # noqa: F401  (registers steps)
from lmforge.pipeline import steps as _steps  # noqa: F401  (registers the built-in steps)
from lmforge.pipeline.recipe import Recipe, RecipeError, Step, load_recipe
from lmforge.pipeline.registry import (
    STEPS,
    Output,
    StepCall,
    StepType,
    register_step,
    unregister_step,
)
from lmforge.pipeline.runner import StepFailed, plan, print_plan, read_state, run, run_dir

__all__ = [
    "STEPS",
    "Output",
    "Recipe",
    "RecipeError",
    "Step",
    "StepCall",
    "StepFailed",
    "StepType",
    "load_recipe",
    "plan",
    "print_plan",
    "read_state",
    "register_step",
    "run",
    "run_dir",
    "unregister_step",
]
