@echo off
rem jarvis-bench launcher for Windows: double-click it, or run it from a terminal with options:
rem     run_benchmark.bat --demo                the embedded demo (CPU, offline)
rem     run_benchmark.bat                       your benchmark_config.json
rem     run_benchmark.bat --all-checkpoints     rank every output\*\final
rem It runs check_setup, benchmark and analyze_results, then opens the HTML report in the browser.
rem Every benchmark.py option is passed on, plus --lang en and --skip-check.
setlocal
cd /d "%~dp0"
chcp 65001 >nul
set PYTHONUTF8=1

where uv >nul 2>nul
if errorlevel 1 goto :no_uv

uv run jarvis-bench run --open %*
set STATUS=%ERRORLEVEL%
if not "%STATUS%"=="0" goto :failed
echo.
echo Done: the report and the charts are in the results folder.
if "%~1"=="" pause
endlocal & exit /b 0

:failed
echo.
echo Stopped with exit code %STATUS%: the message above says what to fix.
echo INSTALLATION.md, section Troubleshooting, lists the usual cases.
pause
endlocal & exit /b %STATUS%

:no_uv
echo uv is not installed. Install it from PowerShell with:
echo     powershell -ExecutionPolicy ByPass -c "irm https://astral.sh/uv/install.ps1 ^| iex"
echo or, if Python is installed:  pip install uv
echo then open a new window and run run_benchmark.bat again (see INSTALLATION.md).
pause
endlocal & exit /b 1
