# Settings at the top, arguments assembled in an ArrayList (the lora-scripts train.ps1 pattern).
$model_type = "sd1.5" # sd1.5 sd2.0 sdxl
$network_dim = 32
$lowram = 0          # 0 is false in PowerShell
$keep = "0"          # the string "0" is true
$noise_offset = 0
$clip_skip = 2
$name = "punks"
$optimizer_type = "AdamW8bit"

$ext_args = [System.Collections.ArrayList]::new()
$launch = @("--num_cpu_threads_per_process=2")
$trainer_file = "./scripts/train_network.py"

if ($model_type -eq "sd1.5") {
  [void]$ext_args.Add("--clip_skip=$clip_skip")
}
elseif ($model_type -eq "sdxl") {
  $trainer_file = "./scripts/sdxl_train_network.py"
}
else {
  [void]$ext_args.Add("--v2")
}
if ($lowram) {
  [void]$ext_args.Add("--lowram")
}
if ($keep) {
  $ext_args.Add("--keep_tokens=1") | Out-Null
}
if ($noise_offset -ne 0) {
  [void]$ext_args.Add("--noise_offset=$noise_offset")
}
if ($optimizer_type -like "AdamW*") {
  $null = $ext_args.AddRange(@("--optimizer_args", "weight_decay=0.01"))
}
$launch += "--mixed_precision=fp16"
$args2 = @("--seed", "1337")

python -m accelerate.commands.launch @launch $trainer_file `
  --network_dim=$network_dim `
  --output_name="$name" --training_comment='$name stays' `
  --optimizer_type=$optimizer_type @args2 $ext_args
