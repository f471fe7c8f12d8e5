// The GPU quantizer against the CPU one (runtime/ep/numeric.h): same codes,
// same scales, bit for bit. Skips without a GPU.
#include "runtime/ep/cuda/fp8_cuda.h"

#include <cstring>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "runtime/ep/numeric.h"

namespace tokenrail {
namespace ep {
namespace {

TEST(Fp8CudaTest, MatchesCpuBitForBit) {
  absl::StatusOr<int> gpus = CudaDeviceCount();
  if (!gpus.ok()) GTEST_SKIP() << "no GPU: " << gpus.status().message();
  for (int64_t hidden : {1, 127, 128, 300, 2048}) {
    SCOPED_TRACE(hidden);
    const int64_t rows = 37, tiles = Fp8TilesPerRow(hidden);
    std::mt19937 rng(static_cast<uint32_t>(hidden));
    std::normal_distribution<float> normal(0.0f, 3.0f);
    std::vector<float> x(rows * hidden);
    for (float& v : x) v = normal(rng);
    std::fill(x.begin(), x.begin() + hidden, 0.0f);  // an all-zero row: scale 1
    x[hidden] = 1e-39f;                              // subnormal amax: scale FLT_MIN

    std::vector<uint8_t> q_cpu(x.size()), q_gpu(x.size());
    std::vector<float> s_cpu(rows * tiles), s_gpu(rows * tiles);
    ASSERT_TRUE(
        QuantizeFp8(x.data(), hidden, rows, hidden, q_cpu.data(), hidden, s_cpu.data(), tiles)
            .ok());

    auto dx = DeviceBuffer::Allocate(x.size() * sizeof(float));
    auto dq = DeviceBuffer::Allocate(x.size());
    auto ds = DeviceBuffer::Allocate(s_cpu.size() * sizeof(float));
    auto dy = DeviceBuffer::Allocate(x.size() * sizeof(float));
    ASSERT_TRUE(dx.ok() && dq.ok() && ds.ok() && dy.ok());
    ASSERT_TRUE(dx->CopyFromHost(x.data(), x.size() * sizeof(float)).ok());
    ASSERT_TRUE(QuantizeFp8OnDevice(static_cast<const float*>(dx->get()), rows, hidden,
                                    static_cast<uint8_t*>(dq->get()),
                                    static_cast<float*>(ds->get()), nullptr)
                    .ok());
    ASSERT_TRUE(dq->CopyToHost(q_gpu.data(), q_gpu.size()).ok());
    ASSERT_TRUE(ds->CopyToHost(s_gpu.data(), s_gpu.size() * sizeof(float)).ok());
    EXPECT_EQ(q_gpu, q_cpu);
    EXPECT_EQ(0, std::memcmp(s_gpu.data(), s_cpu.data(), s_cpu.size() * sizeof(float)));

    std::vector<float> y_cpu(x.size()), y_gpu(x.size());
    DequantizeFp8(q_cpu.data(), hidden, s_cpu.data(), tiles, rows, hidden, y_cpu.data(), hidden);
    ASSERT_TRUE(DequantizeFp8OnDevice(static_cast<const uint8_t*>(dq->get()),
                                      static_cast<const float*>(ds->get()), rows, hidden,
                                      static_cast<float*>(dy->get()), nullptr)
                    .ok());
    ASSERT_TRUE(dy->CopyToHost(y_gpu.data(), y_gpu.size() * sizeof(float)).ok());
    EXPECT_EQ(0, std::memcmp(y_gpu.data(), y_cpu.data(), y_cpu.size() * sizeof(float)));
  }
}

TEST(Fp8CudaTest, RefusesBadShapesOrReportsNoGpu) {
  absl::Status s = QuantizeFp8OnDevice(nullptr, -1, 128, nullptr, nullptr, nullptr);
  if (absl::IsUnavailable(s)) GTEST_SKIP() << "built without CUDA: " << s.message();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace ep
}  // namespace tokenrail
