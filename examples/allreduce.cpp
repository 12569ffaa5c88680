// kumi C++ example: allreduce, reduce-scatter and allgather on std::vector / std::span, and
// splitting the job into two halves. kumi.hpp is a thin RAII layer over the C API: failures
// throw kumi::Error, communicators free themselves, element types come from the buffers.
//
//   kumirun -np 4 -- ./kumi-example-cpp
//
// kumirun sets KUMI_RANK, KUMI_WORLD_SIZE and KUMI_STORE; kumi::Comm::fromEnv() reads them.
#include <kumi/kumi.hpp>

#include <cstdint>
#include <cstdio>
#include <span>
#include <string>
#include <vector>

namespace {

int wrong = 0;  // values that differ from what they should be, on this rank

void expect(bool ok) {
  if (!ok) ++wrong;
}

}  // namespace

int main() {
  try {
    // Join the job (collective: returns once every rank has arrived).
    kumi::Comm world = kumi::Comm::fromEnv();
    const int rank = world.rank();
    const int size = world.size();

    // allReduce on a std::span: in place, the element type (float) is deduced.
    std::vector<float> grads(1000, static_cast<float>(rank + 1));
    world.allReduce(std::span(grads));  // sum by default
    const float sumOfRanks = static_cast<float>(size * (size + 1) / 2);  // 1 + 2 + ... + size
    for (float g : grads) expect(g == sumOfRanks);

    // Out of place, with pointers and another op: max over ranks of each rank's rank.
    std::vector<double> mine(16, rank), biggest(16);
    world.allReduce(mine.data(), biggest.data(), mine.size(), kumiMax);
    for (double b : biggest) expect(b == size - 1);

    // reduceScatter: every rank contributes size*block values; rank r receives the sum of
    // block r. Here each rank sends 1s, so every received value equals the number of ranks.
    const std::size_t block = 4;
    std::vector<std::int32_t> all(block * size, 1), part(block);
    world.reduceScatter(all.data(), part.data(), block);
    for (std::int32_t v : part) expect(v == size);

    // allGather: every rank contributes one block; everybody receives all blocks in rank order.
    std::vector<std::int64_t> piece(block, rank), gathered(block * size);
    world.allGather(piece.data(), gathered.data(), block);
    for (std::size_t i = 0; i < gathered.size(); ++i) expect(gathered[i] == static_cast<std::int64_t>(i / block));

    // split: the lower and the upper half of the ranks each get their own communicator.
    const int color = rank < (size + 1) / 2 ? 0 : 1;
    kumi::Comm half = world.split(color, /*key=*/rank);
    std::vector<int> one{1};
    half.allReduce(std::span(one));  // counts the ranks in this half
    expect(one[0] == half.size());
    expect(half.size() == (color == 0 ? (size + 1) / 2 : size / 2));

    // Agree on the verdict: total of wrong values over all ranks.
    std::vector<int> total{wrong};
    world.allReduce(std::span(total));
    if (rank == 0)
      std::printf("kumi-example-cpp: %d ranks, allreduce reduce_scatter allgather split %s (%d wrong values)\n", size,
                  total[0] == 0 ? "OK" : "FAILED", total[0]);
    return total[0] == 0 ? 0 : 1;  // half, then world, are released here
  } catch (const kumi::Error& e) {
    // e.code() is the kumiResult_t category, e.what() the full message.
    std::fprintf(stderr, "kumi error (%s): %s\n", kumiGetErrorString(e.code()), e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
