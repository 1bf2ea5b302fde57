@echo off
set /A EPOCHS=4*5
set DIM=16
call "%~dp0venv\Scripts\activate.bat"
accelerate launch "%~dp0sd-scripts\train_network.py" ^
  --network_dim %DIM% ^
  --max_train_epochs %EPOCHS% ^
  --output_dir "%~dp0output"
