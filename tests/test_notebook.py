"""Jupyter notebooks (Colab/Kaggle kohya trainers), read as JSON and never executed (evidence/notebook.py).

The fixtures reproduce what public kohya notebooks do (Linaqruf/kohya-trainer's #@param cells and toml.dump'ed
config dicts, hollowstrawberry/kohya-colab's conditional values, Kaggle cells that launch with `!accelerate launch`
and `%%bash`, subprocess calls), written here from scratch.
"""

import json

from click.testing import CliRunner

from lora_audit.cli import main
from lora_audit.evidence import load_runs
from lora_audit.evidence.notebook import parse_notebook


def notebook(path, *cells):
    """Write a notebook; each cell is code text, or ("markdown", text)."""
    out = []
    for c in cells:
        kind, text = c if isinstance(c, tuple) else ("code", c)
        lines = text.split("\n")
        cell = {"cell_type": kind, "metadata": {}, "source": [ln + "\n" for ln in lines[:-1]] + [lines[-1]]}
        if kind == "code":
            cell.update(outputs=[], execution_count=None)
        out.append(cell)
    path.write_text(json.dumps({"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": out}, indent=1))
    return path


SETTINGS = """\
#@title ## Training settings
project_name = "punks" #@param {type:"string"}
network_dim = 32 #@param {type:"number"}
network_alpha = network_dim // 2
unet_lr = 1e-4 #@param {type:"number"}
lr_scheduler = "cosine_with_restarts" #@param ["constant", "cosine", "cosine_with_restarts"]
lr_scheduler_num_cycles = 3 #@param {type:"number"}
use_8bit = True #@param {type:"boolean"}
optimizer_type = "AdamW8bit" if use_8bit else "AdamW"
config_dir = "/content/LoRA/config"
"""

CONFIG = """\
import os
import toml

config = {
    "model_arguments": {
        "pretrained_model_name_or_path": "/content/pretrained_model/AnyLoRA.safetensors",
        "v2": False,
    },
    "additional_network_arguments": {
        "network_module": "networks.lora",
        "network_dim": network_dim,
        "network_alpha": network_alpha,
        "unet_lr": unet_lr,
    },
    "optimizer_arguments": {
        "optimizer_type": optimizer_type,
        "learning_rate": unet_lr,
        "lr_scheduler": lr_scheduler,
        "lr_scheduler_num_cycles": lr_scheduler_num_cycles if lr_scheduler == "cosine_with_restarts" else None,
        "lr_scheduler_power": 1.0 if lr_scheduler == "polynomial" else None,
    },
    "training_arguments": {
        "output_name": project_name,
        "train_batch_size": 4,
        "max_train_epochs": 10,
        "mixed_precision": "fp16",
        "seed": input("seed? "),
    },
}
config_file = os.path.join(config_dir, "config_file.toml")
with open(config_file, "w") as f:
    f.write(toml.dumps(config))
"""

LAUNCH = """\
%cd /content/kohya-trainer
!accelerate launch --num_cpu_threads_per_process=1 train_network.py \\
  --config_file={config_file} \\
  --train_data_dir="/content/LoRA/train_data"
"""


def test_colab_trainer_config_dict_and_launch(tmp_path):
    p = notebook(tmp_path / "trainer.ipynb", ("markdown", "# LoRA trainer"), SETTINGS, CONFIG, LAUNCH)
    (ev,) = parse_notebook(p)
    assert ev.kind == "notebook" and ev.script == "train_network.py" and ev.complete
    got = {s.name: (s.value, s.source) for s in ev.settings}
    label = str(p)
    # values from the dict, each at the line that sets it: a variable's own #@param line, else the dict's key line
    assert got["network_dim"] == (32, f"{label}:cell 2:3")
    assert got["network_alpha"] == (16, f"{label}:cell 2:4")
    assert got["optimizer_type"] == ("AdamW8bit", f"{label}:cell 2:9")
    assert got["lr_scheduler_num_cycles"][0] == 3
    assert got["train_batch_size"] == (4, f"{label}:cell 3:24")
    assert got["pretrained_model_name_or_path"][1] == f"{label}:cell 3:6"
    assert got["train_data_dir"] == ("/content/LoRA/train_data", f"{label}:cell 4:4")
    # None values are not written by toml.dump: kohya's default; input() is not known: not invented
    assert "lr_scheduler_power" not in got and "seed" not in got
    assert any("seed" in w.message and "run time" in w.message for w in ev.warnings)


def test_bash_cell_subprocess_and_os_system(tmp_path):
    p = notebook(
        tmp_path / "k.ipynb",
        "%%bash\ncd /kaggle/working/sd-scripts\nDIM=8\naccelerate launch sdxl_train_network.py \\\n"
        "  --network_dim $DIM --pretrained_model_name_or_path=/kaggle/input/sdxl.safetensors",
        "import subprocess\nsubprocess.run(['accelerate', 'launch', 'train_network.py', '--network_dim', '16',\n"
        "                '--learning_rate=3e-4'], check=True)",
        "import os\nlr = '5e-5'\nos.system(f'python train_network.py --learning_rate {lr} --seed 7')",
        "cmd = build_command()\nsubprocess.run(cmd)  # not literal: not read",
    )
    bash, sub, system = parse_notebook(p)
    assert bash.script == "sdxl_train_network.py"
    assert {s.name: s.value for s in bash.settings}["network_dim"] == 8
    assert {s.name: s.source for s in bash.settings}["network_dim"] == f"{p}:cell 1:5"
    assert {s.name: s.value for s in sub.settings} == {"network_dim": 16, "learning_rate": 3e-4}
    assert {s.name: s.value for s in system.settings} == {"learning_rate": 5e-5, "seed": 7}


def test_environment_and_ipython_expansion(tmp_path):
    p = notebook(
        tmp_path / "e.ipynb",
        "import os\nos.environ['MODEL'] = 'runwayml/stable-diffusion-v1-5'\n%env OUT=/content/out\ndim = 4",
        "!python train_network.py --pretrained_model_name_or_path=\"$MODEL\" --output_dir=$OUT "
        "--network_dim=$dim --network_alpha {dim / 2}",
    )
    (ev,) = parse_notebook(p)
    got = {s.name: s.value for s in ev.settings}
    assert got == {"pretrained_model_name_or_path": "runwayml/stable-diffusion-v1-5", "output_dir": "/content/out",
                   "network_dim": 4, "network_alpha": 2.0}


def test_a_value_only_set_in_an_unknown_branch_is_not_taken(tmp_path):
    p = notebook(
        tmp_path / "b.ipynb",
        "dim = 32\nif os.path.exists('/content/drive'):\n    dim = 64\nif True:\n    alpha = 8",
        "!accelerate launch train_network.py --network_dim={dim} --network_alpha={alpha}",
    )
    (ev,) = parse_notebook(p)
    got = {s.name: s.value for s in ev.settings}
    assert got == {"network_alpha": 8.0}  # dim is 32 or 64: unknown, never the 32 of the first line
    assert any("{dim}" in w.message for w in ev.warnings)


def test_lora_and_fine_tune_cells_are_two_runs_that_never_mix(tmp_path):
    p = notebook(
        tmp_path / "both.ipynb",
        "!accelerate launch train_network.py --network_dim 16 --learning_rate 1e-4 "
        "--pretrained_model_name_or_path a.safetensors --train_data_dir img",
        "!accelerate launch fine_tune.py --learning_rate 5e-6 --train_batch_size 1 "
        "--pretrained_model_name_or_path a.safetensors --train_data_dir img",
    )
    lora, ft = load_runs([p])
    assert (lora.name, ft.name) == ("both-1", "both-2")
    assert lora.script == "train_network.py" and ft.script == "fine_tune.py"
    assert lora.params["learning_rate"].value == 1e-4 and ft.params["learning_rate"].value == 5e-6
    assert "network_dim" not in ft.params or ft.params["network_dim"].origin != "explicit"
    assert lora.params["train_batch_size"].origin == "default"
    r = CliRunner().invoke(main, ["inspect", str(p), "--json"])
    assert r.exit_code == 0, r.output
    assert [x["name"] for x in json.loads(r.output)["runs"]] == ["both-1", "both-2"]


def test_a_notebook_is_never_executed(tmp_path):
    victim = tmp_path / "keep.txt"
    victim.write_text("mine")
    p = notebook(tmp_path / "x.ipynb",
                 f"import os\nos.remove({str(victim)!r})\n!rm {victim}\n!python train_network.py --seed 1")
    (ev,) = parse_notebook(p)
    assert victim.read_text() == "mine"
    assert {s.name: s.value for s in ev.settings} == {"seed": 1}


def test_not_a_notebook_is_one_line(tmp_path):
    p = tmp_path / "bad.ipynb"
    p.write_text('{"cells": ')
    r = CliRunner().invoke(main, ["inspect", str(p)])
    assert r.exit_code == 2 and r.output.startswith("error: ") and "Traceback" not in r.output
    p.write_text('{"nbformat": 4}')
    r = CliRunner().invoke(main, ["inspect", str(p)])
    assert r.exit_code == 2 and "no cells" in r.output


def test_huge_literals_are_refused_not_built(tmp_path):
    p = notebook(tmp_path / "big.ipynb",
                 "x = 'a' * 10**12\ny = 'b' * 1000\nz = y.replace('b', y * 50)\nw = f'{1:>999999999}'",
                 "!python train_network.py --output_name={x} --seed 2")
    (ev,) = parse_notebook(p)
    assert {s.name: s.value for s in ev.settings}["seed"] == 2


# The shape of hollowstrawberry/kohya-colab's trainer: first-run guards on globals(), a main() that calls
# create_config(), a validate step that sets globals from the dataset (unknown), and the ! line inside main().
FUNCTIONS = """\
import os, toml
if "optimizer" not in globals():
  optimizer = "AdamW8bit"
network_dim = 16 #@param {type:"slider", min:1, max:128, step:1}
lr_warmup_steps = 0
main_dir = "/content/drive/MyDrive/Loras"
config_file = os.path.join(main_dir, "training_config.toml")

def validate_dataset():
  global lr_warmup_steps
  images = len(os.listdir(main_dir))
  lr_warmup_steps = int(images * 10 * 0.05)
  return True

def write_file(filename, contents):
  with open(filename, "w") as f:
    f.write(contents)

def create_config():
  config_dict = {
    "additional_network_arguments": {"network_dim": network_dim, "network_module": "networks.lora"},
    "optimizer_arguments": {"optimizer_type": optimizer, "lr_warmup_steps": lr_warmup_steps},
  }
  config_str = toml.dumps(config_dict)
  write_file(config_file, config_str)

def main():
  if not validate_dataset():
    return
  create_config()
  !accelerate launch --num_cpu_threads_per_process=1 train_network.py --config_file={config_file}

main()
"""


def test_functions_globals_guards_and_toml_dumps_text(tmp_path):
    p = notebook(tmp_path / "hs.ipynb", FUNCTIONS)
    (ev,) = parse_notebook(p)
    got = {s.name: s.value for s in ev.settings}
    assert got["network_dim"] == 16 and got["optimizer_type"] == "AdamW8bit"
    assert got["network_module"] == "networks.lora"
    assert {s.name: s.source for s in ev.settings}["network_dim"] == f"{p}:cell 1:4"
    # set by validate_dataset() from the images: unknown, never the 0 written before it
    assert "lr_warmup_steps" not in got
    assert any("lr_warmup_steps" in w.message for w in ev.warnings)


def test_a_loop_body_is_read_once_with_its_item_unknown(tmp_path):
    p = notebook(tmp_path / "loop.ipynb",
                 "for project in projects:\n"
                 "    out = '/content/' + project\n"
                 "    !accelerate launch train_network.py --network_dim 8 --output_dir={out}")
    (ev,) = parse_notebook(p)
    assert {s.name: s.value for s in ev.settings}["network_dim"] == 8
    assert any("inside a loop" in w.message for w in ev.warnings)


def test_a_command_built_at_run_time_still_gives_the_config_it_writes(tmp_path):
    # Linaqruf/kohya-trainer: the config is a literal dict, the command is assembled by a function with a loop
    p = notebook(
        tmp_path / "lq.ipynb",
        "import toml\nconfig = {'training_arguments': {'train_batch_size': 6, 'max_train_epochs': 10},\n"
        "          'model_arguments': {'pretrained_model_name_or_path': '/content/model.ckpt'}}\n"
        "with open('/content/LoRA/config/config_file.toml', 'w') as f:\n    f.write(toml.dumps(config))",
        "import os\ntrain_args = ' '.join(f'--{k}={v}' for k, v in os.environ.items() if k.startswith('KOHYA_'))\n"
        "final_args = f'accelerate launch train_network.py {train_args}'\n!{final_args}",
    )
    (ev,) = parse_notebook(p)
    assert ev.script is None and not ev.complete  # the command's own flags are unknown
    assert {s.name: s.value for s in ev.settings} == {"train_batch_size": 6, "max_train_epochs": 10,
                                                      "pretrained_model_name_or_path": "/content/model.ckpt"}
    assert any("built at run time" in w.message for w in ev.warnings)


def test_a_loop_over_a_known_config_runs_as_python_would(tmp_path):
    # Linaqruf/kohya-trainer turns "" into None before toml.dumps (which then leaves the key out);
    # hollowstrawberry/kohya-colab filters None out with a dict comprehension
    p = notebook(
        tmp_path / "clean.ipynb",
        "import toml\nvae = ''  # @param {type:'string'}\n"
        "config = {'model_arguments': {'vae': vae, 'v2': False},\n"
        "          'training_arguments': {'seed': 7, 'resume': None, 'output_name': ''}}\n"
        "for key in config:\n    if isinstance(config[key], dict):\n        for sub_key in config[key]:\n"
        "            if config[key][sub_key] == '':\n                config[key][sub_key] = None\n"
        "for key in config:\n    config[key] = {k: v for k, v in config[key].items() if v is not None}\n"
        "del config['model_arguments']['v2']\n"
        "with open('/c/config.toml', 'w') as f:\n    f.write(toml.dumps(config))",
        "!accelerate launch train_network.py --config_file=/c/config.toml",
    )
    (ev,) = parse_notebook(p)
    got = {s.name: (s.value, s.source) for s in ev.settings}
    assert set(got) == {"seed", "config_file"}
    assert got["seed"] == (7, f"{p}:cell 1:4")  # the line that sets it, through the comprehension


def test_function_return_values_and_dict_update(tmp_path):
    # Linaqruf/kohya-trainer XL: train_config.update(...) from other cells, eliminate_none_variable(config) that
    # returns its argument, and a train(config) that builds the command's flags in a loop over a known dict
    p = notebook(
        tmp_path / "xl.ipynb",
        "lora_config = {'additional_network_arguments': {'network_dim': 32, 'network_alpha': 16}}",
        "import os, toml\n"
        "train_config = {'training_arguments': {'train_batch_size': 4, 'vae': ''}}\n"
        "try:\n    train_config.update(lora_config)\nexcept NameError:\n    raise\n"
        "def eliminate_none_variable(config):\n    for key in config:\n"
        "        for sub_key in config[key]:\n            if config[key][sub_key] == '':\n"
        "                config[key][sub_key] = None\n    return config\n"
        "def write_file(filename, contents):\n    with open(filename, 'w') as f:\n        f.write(contents)\n"
        "config_path = os.path.join('/content/LoRA/config', 'config_file.toml')\n"
        "write_file(config_path, toml.dumps(eliminate_none_variable(train_config)))",
        "def train(config):\n    args = ''\n    for k, v in config.items():\n"
        "        if isinstance(v, str):\n            args += f'--{k}=\"{v}\" '\n"
        "        elif isinstance(v, int):\n            args += f'--{k}={v} '\n    return args\n"
        "train_args = train({'config_file': config_path, 'seed': 11})\n"
        "final_args = f'accelerate launch sdxl_train_network.py {train_args}'\n!{final_args}",
    )
    (ev,) = parse_notebook(p)
    got = {s.name: s.value for s in ev.settings}
    assert ev.script == "sdxl_train_network.py"
    assert got == {"train_batch_size": 4, "network_dim": 32, "network_alpha": 16,
                   "config_file": "/content/LoRA/config/config_file.toml", "seed": 11}
    assert {s.name: s.source for s in ev.settings}["network_dim"] == f"{p}:cell 1:1"


def test_a_script_the_notebook_writes_and_runs(tmp_path):
    # Linaqruf/kohya-trainer's fast trainer: an f-string command written to a .sh, then `!./train.sh`
    p = notebook(
        tmp_path / "fast.ipynb",
        "network_dim = 128\nv2 = False\nmodel = '/content/model.safetensors'\n"
        'train_command = f"""\naccelerate launch train_network.py \\\\\n'
        '  {"--v2" if v2 else ""} \\\\\n  --pretrained_model_name_or_path={model} \\\\\n'
        '  --network_dim={format(network_dim)}\n"""\n'
        'f = open("./train.sh", "w")\nf.write(train_command)\nf.close()\n!chmod +x ./train.sh\n!./train.sh',
    )
    (ev,) = parse_notebook(p)
    assert {s.name: s.value for s in ev.settings} == {"pretrained_model_name_or_path": "/content/model.safetensors",
                                                      "network_dim": 128}


def test_loop_bombs_and_deep_nesting_end_with_a_note(tmp_path):
    p = notebook(tmp_path / "bomb.ipynb",
                 "for a in range(1000):\n    for b in range(1000):\n        for c in range(1000):\n            x = 1",
                 "y = " + "(" * 5000 + "1" + ")" * 5000,
                 "z = " + "[" * 300 + "]" * 300,
                 "!accelerate launch train_network.py --seed 4")
    evs = parse_notebook(p)  # the loops stop at the statement budget: a note, not a hang
    assert evs == [] or {s.name: s.value for s in evs[0].settings} == {"seed": 4}
    r = CliRunner().invoke(main, ["inspect", str(p)])
    assert r.exit_code in (0, 2) and "Traceback" not in r.output


def test_an_unknown_python_value_in_a_bang_line_is_unknown_not_its_text(tmp_path):
    p = notebook(tmp_path / "u.ipynb", "config_file = find_config()",
                 "!accelerate launch train_network.py --config_file={config_file} --seed 5")
    (ev,) = parse_notebook(p)
    got = {s.name: s for s in ev.settings}
    assert got["seed"].value == 5 and got["seed"].origin == "explicit"
    assert got["config_file"].origin == "unknown" and "run time" in got["config_file"].note
    run = load_runs([p])[0]
    assert run.params["config_file"].origin == "unknown"


def test_popen_of_a_list_with_run_time_paths_and_the_config_written_there(tmp_path):
    # dmikey/kohya-colab: the config path depends on the Drive folder (run time); the same variable names it in the
    # command, so the config the notebook writes there is the one the command reads
    p = notebook(
        tmp_path / "dm.ipynb",
        "import os, sys, subprocess, toml\nnetwork_dim = 16\nconfig_file = os.path.join(find_drive(), 'c.toml')\n"
        "with open(config_file, 'w') as f:\n"
        "    f.write(toml.dumps({'additional_network_arguments': {'network_dim': network_dim}}))\n"
        "cmd = [sys.executable, '-m', 'accelerate.commands.launch', 'train_network.py',\n"
        "       f'--config_file={config_file}', '--seed=3']\n"
        "process = subprocess.Popen(cmd, stdout=subprocess.PIPE)",
    )
    (ev,) = parse_notebook(p)
    got = {s.name: s for s in ev.settings}
    assert ev.script == "train_network.py"
    assert got["network_dim"].value == 16 and got["network_dim"].source == f"{p}:cell 1:2"
    assert got["seed"].value == 3
    assert got["config_file"].origin == "unknown" and got["config_file"].value is None


def test_writefile_cells_are_files_the_notebook_creates(tmp_path):
    p = notebook(
        tmp_path / "wf.ipynb",
        "%%writefile /content/config.toml\n[model_arguments]\npretrained_model_name_or_path = \"m.safetensors\"\n"
        "[training_arguments]\nnetwork_dim = 24\n",
        "%%writefile run.sh\naccelerate launch train_network.py --config_file /content/config.toml --seed 9\n",
        "!bash run.sh",
    )
    (ev,) = parse_notebook(p)
    got = {s.name: (s.value, s.source) for s in ev.settings}
    assert got["network_dim"] == (24, f"{p}:cell 1:5")
    assert got["seed"] == (9, f"{p}:cell 2:2")
