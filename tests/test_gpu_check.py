"""bench/gpu_check.sh parses, and the GPU bench finds published bfloat16 peaks by GPU name.

The script itself needs a GPU (its --dry-run runs the CPU side; docs/performance.md, "GPU").
"""

import os
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_gpu_check_script_parses():
  done = subprocess.run(['bash', '-n', os.path.join(ROOT, 'bench', 'gpu_check.sh')],
                        capture_output=True, text=True, check=False)
  assert done.returncode == 0, done.stderr


def test_published_peaks_match_the_most_specific_name(load_bench):
  train = load_bench('train')
  assert train.published_peak_tflops('NVIDIA H100 80GB HBM3') == 989.0  # SXM
  assert train.published_peak_tflops('NVIDIA H100 PCIe') == 756.0
  assert train.published_peak_tflops('NVIDIA H200') == 989.0
  assert train.published_peak_tflops('NVIDIA A100-SXM4-80GB') == 312.0
  assert train.published_peak_tflops('NVIDIA L40S') == 362.0  # not L4's 121
  assert train.published_peak_tflops('Some Future GPU') == 0.0
