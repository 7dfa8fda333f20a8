// Configure-time probe: exits 0 and prints the device name when CUDA can run here.
#include <cuda_runtime.h>

#include <cstdio>

int main() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0) return 1;
  cudaDeviceProp prop{};
  if (cudaGetDeviceProperties(&prop, 0) != cudaSuccess) return 1;
  std::printf("%s, sm_%d%d", prop.name, prop.major, prop.minor);
  return 0;
}
