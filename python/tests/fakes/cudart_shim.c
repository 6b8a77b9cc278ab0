/* Stand-ins for the two CUDA runtime calls real PyTorch makes on its raw-allocation path
 * before it reaches the allocator, so that tests on a machine without a GPU can drive real
 * PyTorch's CUDAPluggableAllocator into libpoolside_cuda on its simulated driver.
 *
 * Preloaded, and built with a version script naming PyTorch's libcudart soname, because
 * PyTorch binds these symbols with that version. Nothing else of the runtime is replaced:
 * torch.cuda stays uninitialized and torch.cuda.is_available() stays False.
 *
 * cudaGetDevice: CUDAPluggableAllocator::raw_alloc_with_stream asks for the current device.
 * cudaGetDeviceCount: PyTorch's error check builds its device-assertion registry on first
 * use, which counts devices; zero devices means it inspects none. */
int cudaGetDevice(int *device) {
  *device = 0;
  return 0; /* cudaSuccess */
}

int cudaGetDeviceCount(int *count) {
  *count = 0;
  return 0;
}
