"""Convert an official MiniCPM `finetune.py` launch script into an axolotl recipe.

The official scripts look like::

    formatted_time=$(date +"%Y%m%d%H%M%S")
    deepspeed --include localhost:0 finetune.py \\
        --model_name_or_path MiniCPM3-4B --output_dir output/LoRA/$formatted_time/ \\
        --train_data_path data/train.json --bf16 --use_lora ... \\
        --deepspeed configs/ds_config_zero2_offload.json

`shell` reads such a script the way bash does (line continuations, quotes, `$VAR` / `${VAR:-x}`
from earlier assignments, `;`/`&&`/`|`, redirections, comments); `launch` finds the training
command with one deliberate difference from bash: a `# comment` after a line-continuation backslash
(or a comment line inside a continued command) makes bash end the command right there and silently
drop every later flag. That is never what the author meant, so it is reported with its line number
and the flags are read as intended. `flags` maps the flags to recipe keys and `recipe` writes the
commented YAML.

Pure Python (no torch, no axolotl): `convert_script(text, path)` returns a `Conversion` whose
`to_yaml()` is the recipe, plus the warnings and the flags that have no axolotl equivalent.
"""

from minicpm_plugin.tools.convert.bash import bash_reading, bash_warnings
from minicpm_plugin.tools.convert.flags import OFFICIAL_LORA, convert_script
from minicpm_plugin.tools.convert.launch import Flag, Launch, Trap, find_traps, read_launch
from minicpm_plugin.tools.convert.recipe import Conversion
from minicpm_plugin.tools.convert.shell import ScriptError, decode_script

__all__ = ["OFFICIAL_LORA", "Conversion", "Flag", "Launch", "ScriptError", "Trap", "bash_reading",
           "bash_warnings", "convert_script", "decode_script", "find_traps", "read_launch"]
