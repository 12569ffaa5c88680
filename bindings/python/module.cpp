// kumi._kumi: the Python binding over kumi's public C API. Not compiled against torch: arrays come
// in through DLPack or the buffer protocol (numpy, torch, JAX, CuPy), so one build serves every
// framework and every torch version. Blocking calls release the GIL; errors become kumi.Error
// subclasses carrying kumi's message. python/kumi/ wraps this module with the friendly API.
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/unique_ptr.h>

#include <kumi/kumi.h>

#include <array>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <utility>

namespace nb = nanobind;

namespace {

// A failed kumi call: translated to the Python class of its result code.
struct KumiFailure {
  kumiResult_t code;
  std::string message;
};

void check(kumiResult_t r) {
  if (r != kumiSuccess) throw KumiFailure{r, kumiGetLastError()};
}

// Python classes by result code, created at import (module state lives as long as the module).
std::array<PyObject*, kumiNumResults> errorClasses{};

using Array = nb::ndarray<nb::device::cpu>;

kumiDataType_t dataTypeOf(const Array& a, const char* what) {
  const nb::dlpack::dtype t = a.dtype();
  using Code = nb::dlpack::dtype_code;
  const auto code = static_cast<Code>(t.code);
  if (t.lanes == 1) {
    switch (code) {
      case Code::Int:
        if (t.bits == 8) return kumiInt8;
        if (t.bits == 32) return kumiInt32;
        if (t.bits == 64) return kumiInt64;
        break;
      case Code::UInt:
        if (t.bits == 8) return kumiUint8;
        if (t.bits == 32) return kumiUint32;
        if (t.bits == 64) return kumiUint64;
        break;
      case Code::Float:
        if (t.bits == 16) return kumiFloat16;
        if (t.bits == 32) return kumiFloat32;
        if (t.bits == 64) return kumiFloat64;
        break;
      case Code::Bfloat:
        if (t.bits == 16) return kumiBfloat16;
        break;
      default:
        break;
    }
  }
  throw KumiFailure{kumiInvalidArgument,
                    std::string(what) + ": unsupported dtype (code " + std::to_string(t.code) + ", " +
                        std::to_string(t.bits) + " bits, " + std::to_string(t.lanes) +
                        " lanes): kumi handles int8, uint8, int32, uint32, int64, uint64, float16, bfloat16, "
                        "float32 and float64"};
}

// Collectives read and write whole buffers: a strided view would silently leave gaps.
void requireContiguous(const Array& a, const char* what) {
  std::int64_t expected = 1;
  for (std::size_t d = a.ndim(); d-- > 0;) {
    if (a.shape(d) != 1 && a.stride(d) != expected)
      throw KumiFailure{kumiInvalidArgument, std::string(what) + ": the array is not contiguous (make a copy with "
                                                                 "numpy.ascontiguousarray or tensor.contiguous())"};
    expected *= static_cast<std::int64_t>(a.shape(d));
  }
}

struct View {
  void* data;
  std::size_t count;
  kumiDataType_t type;
};

View viewOf(const Array& a, const char* what) {
  requireContiguous(a, what);
  return {a.data(), a.size(), dataTypeOf(a, what)};
}

void sameType(const View& a, const View& b, const char* what) {
  if (a.type != b.type)
    throw KumiFailure{kumiInvalidArgument, std::string(what) + ": input and output arrays have different dtypes"};
}

kumiRedOp_t opOf(int op) {
  if (op < 0 || op >= kumiNumOps) throw KumiFailure{kumiInvalidArgument, "unknown reduction op " + std::to_string(op)};
  return static_cast<kumiRedOp_t>(op);
}

// One communicator. Destroyed explicitly (close) or when garbage-collected; abort may come from
// any thread, which the C API allows.
class Communicator {
 public:
  explicit Communicator(kumiComm_t h) : handle_(h) {}
  ~Communicator() {
    if (handle_) kumiCommDestroy(handle_);
  }
  Communicator(const Communicator&) = delete;
  Communicator& operator=(const Communicator&) = delete;

  kumiComm_t handle() const {
    if (!handle_) throw KumiFailure{kumiInvalidUsage, "the communicator was closed"};
    return handle_;
  }
  int rank() const {
    int r = -1;
    check(kumiCommRank(handle(), &r));
    return r;
  }
  int size() const {
    int s = -1;
    check(kumiCommSize(handle(), &s));
    return s;
  }
  void close() {
    if (!handle_) return;
    kumiComm_t h = std::exchange(handle_, nullptr);
    nb::gil_scoped_release nogil;
    check(kumiCommDestroy(h));
  }
  void abort() {
    if (!handle_) return;
    kumiComm_t h = std::exchange(handle_, nullptr);
    nb::gil_scoped_release nogil;
    check(kumiCommAbort(h));
  }

 private:
  kumiComm_t handle_ = nullptr;
};

template <class F>
void blocking(F&& f) {
  nb::gil_scoped_release nogil;
  check(f());
}

void allReduce(Communicator& c, Array send, Array recv, int op) {
  View s = viewOf(send, "all_reduce input"), r = viewOf(recv, "all_reduce output");
  sameType(s, r, "all_reduce");
  if (s.count != r.count)
    throw KumiFailure{kumiInvalidArgument, "all_reduce: input has " + std::to_string(s.count) + " elements, output " +
                                               std::to_string(r.count)};
  const kumiRedOp_t o = opOf(op);
  kumiComm_t h = c.handle();
  blocking([&] { return kumiAllReduce(s.data, r.data, s.count, s.type, o, h, nullptr); });
}

void reduce(Communicator& c, Array send, Array recv, int root, int op) {
  View s = viewOf(send, "reduce input"), r = viewOf(recv, "reduce output");
  sameType(s, r, "reduce");
  if (s.count != r.count)
    throw KumiFailure{kumiInvalidArgument, "reduce: input has " + std::to_string(s.count) + " elements, output " +
                                               std::to_string(r.count)};
  const kumiRedOp_t o = opOf(op);
  kumiComm_t h = c.handle();
  blocking([&] { return kumiReduce(s.data, r.data, s.count, s.type, o, root, h, nullptr); });
}

void broadcast(Communicator& c, Array send, Array recv, int root) {
  View s = viewOf(send, "broadcast input"), r = viewOf(recv, "broadcast output");
  sameType(s, r, "broadcast");
  if (s.count != r.count)
    throw KumiFailure{kumiInvalidArgument, "broadcast: input has " + std::to_string(s.count) + " elements, output " +
                                               std::to_string(r.count)};
  kumiComm_t h = c.handle();
  blocking([&] { return kumiBroadcast(s.data, r.data, s.count, s.type, root, h, nullptr); });
}

void reduceScatter(Communicator& c, Array send, Array recv, int op) {
  View s = viewOf(send, "reduce_scatter input"), r = viewOf(recv, "reduce_scatter output");
  sameType(s, r, "reduce_scatter");
  const std::size_t n = static_cast<std::size_t>(c.size());
  if (s.count != r.count * n)
    throw KumiFailure{kumiInvalidArgument, "reduce_scatter: input has " + std::to_string(s.count) +
                                               " elements, expected output size x world size = " +
                                               std::to_string(r.count) + " x " + std::to_string(n)};
  const kumiRedOp_t o = opOf(op);
  kumiComm_t h = c.handle();
  blocking([&] { return kumiReduceScatter(s.data, r.data, r.count, s.type, o, h, nullptr); });
}

void allGather(Communicator& c, Array send, Array recv) {
  View s = viewOf(send, "all_gather input"), r = viewOf(recv, "all_gather output");
  sameType(s, r, "all_gather");
  const std::size_t n = static_cast<std::size_t>(c.size());
  if (r.count != s.count * n)
    throw KumiFailure{kumiInvalidArgument, "all_gather: output has " + std::to_string(r.count) +
                                               " elements, expected input size x world size = " +
                                               std::to_string(s.count) + " x " + std::to_string(n)};
  kumiComm_t h = c.handle();
  blocking([&] { return kumiAllGather(s.data, r.data, s.count, s.type, h, nullptr); });
}

void allToAll(Communicator& c, Array send, Array recv) {
  View s = viewOf(send, "all_to_all input"), r = viewOf(recv, "all_to_all output");
  sameType(s, r, "all_to_all");
  const std::size_t n = static_cast<std::size_t>(c.size());
  if (s.count != r.count || s.count % n != 0)
    throw KumiFailure{kumiInvalidArgument, "all_to_all: input and output need the same number of elements, a multiple "
                                           "of the world size " + std::to_string(n) + "; got " +
                                               std::to_string(s.count) + " and " + std::to_string(r.count)};
  kumiComm_t h = c.handle();
  blocking([&] { return kumiAllToAll(s.data, r.data, s.count / n, s.type, h, nullptr); });
}

void send(Communicator& c, Array data, int peer) {
  View v = viewOf(data, "send");
  kumiComm_t h = c.handle();
  blocking([&] { return kumiSend(v.data, v.count, v.type, peer, h, nullptr); });
}

void recv(Communicator& c, Array data, int peer) {
  View v = viewOf(data, "recv");
  kumiComm_t h = c.handle();
  blocking([&] { return kumiRecv(v.data, v.count, v.type, peer, h, nullptr); });
}

void barrier(Communicator& c) {
  kumiComm_t h = c.handle();
  blocking([&] { return kumiBarrier(h, nullptr); });
}

std::unique_ptr<Communicator> split(Communicator& c, int color, int key) {
  kumiComm_t h = c.handle(), out = nullptr;
  blocking([&] { return kumiCommSplit(h, color, key, &out); });
  return std::make_unique<Communicator>(out);
}

std::unique_ptr<Communicator> initConfig(std::optional<int> rank, std::optional<int> worldSize, std::optional<std::string> store,
                         std::optional<std::string> jobId, std::optional<double> timeout) {
  kumiConfig_t cfg = KUMI_CONFIG_INITIALIZER;
  if (rank) cfg.rank = *rank;
  if (worldSize) cfg.worldSize = *worldSize;
  if (store) cfg.storeAddr = store->c_str();
  if (jobId) cfg.jobId = jobId->c_str();
  if (timeout) cfg.timeoutSeconds = *timeout;
  kumiComm_t out = nullptr;
  blocking([&] { return kumiCommInitConfig(&out, &cfg); });
  return std::make_unique<Communicator>(out);
}

nb::bytes uniqueId() {
  kumiUniqueId id;
  kumiResult_t r;
  {
    nb::gil_scoped_release nogil;
    r = kumiGetUniqueId(&id);
  }
  // A failed id still carries its error to the ranks given it; the caller hears it too.
  check(r);
  return nb::bytes(id.internal, sizeof id.internal);
}

std::unique_ptr<Communicator> initWithId(nb::bytes id, int worldSize, int rank) {
  kumiUniqueId raw{};
  if (id.size() != sizeof raw.internal)
    throw KumiFailure{kumiInvalidArgument, "unique id: expected " + std::to_string(sizeof raw.internal) +
                                               " bytes (from kumi.get_unique_id), got " + std::to_string(id.size())};
  std::memcpy(raw.internal, id.c_str(), sizeof raw.internal);
  kumiComm_t out = nullptr;
  blocking([&] { return kumiCommInitRankWithId(&out, worldSize, raw, rank); });
  return std::make_unique<Communicator>(out);
}

}  // namespace

NB_MODULE(_kumi, m) {
  m.doc() = "kumi's native module; use the kumi package instead.";
  // torch keeps a registered process group (and so its communicator) alive until interpreter
  // exit, past the point where nanobind counts leaks: its report would be noise in every job.
  nb::set_leak_warnings(false);

  // kumi.Error and one subclass per result code, created here so that the translator can raise them.
  static const std::array<const char*, kumiNumResults> kNames{
      "", "InvalidArgumentError", "InvalidUsageError", "SystemError", "TimeoutError", "RemoteError",
      "AbortedError", "InternalError"};
  PyObject* base = PyErr_NewExceptionWithDoc("kumi.Error", "A kumi call failed; the message says why.", nullptr,
                                             nullptr);
  m.attr("Error") = nb::handle(base);
  errorClasses[0] = base;
  for (int code = 1; code < kumiNumResults; ++code) {
    std::string qualified = std::string("kumi.") + kNames[static_cast<std::size_t>(code)];
    PyObject* cls = PyErr_NewException(qualified.c_str(), base, nullptr);
    m.attr(kNames[static_cast<std::size_t>(code)]) = nb::handle(cls);
    errorClasses[static_cast<std::size_t>(code)] = cls;
  }
  nb::register_exception_translator([](const std::exception_ptr& p, void*) {
    try {
      std::rethrow_exception(p);
    } catch (const KumiFailure& f) {
      const auto i = static_cast<std::size_t>(f.code);
      PyObject* cls = i < errorClasses.size() && errorClasses[i] ? errorClasses[i] : errorClasses[0];
      PyErr_SetString(cls, f.message.c_str());
    }
  });

  nb::class_<Communicator>(m, "Communicator")
      .def_prop_ro("rank", &Communicator::rank)
      .def_prop_ro("size", &Communicator::size)
      .def("close", &Communicator::close)
      .def("abort", &Communicator::abort)
      .def("all_reduce", &allReduce, nb::arg("send").noconvert(), nb::arg("recv").noconvert(), nb::arg("op"))
      .def("reduce", &reduce, nb::arg("send").noconvert(), nb::arg("recv").noconvert(), nb::arg("root"), nb::arg("op"))
      .def("broadcast", &broadcast, nb::arg("send").noconvert(), nb::arg("recv").noconvert(), nb::arg("root"))
      .def("reduce_scatter", &reduceScatter, nb::arg("send").noconvert(), nb::arg("recv").noconvert(), nb::arg("op"))
      .def("all_gather", &allGather, nb::arg("send").noconvert(), nb::arg("recv").noconvert())
      .def("all_to_all", &allToAll, nb::arg("send").noconvert(), nb::arg("recv").noconvert())
      .def("send", &send, nb::arg("data").noconvert(), nb::arg("peer"))
      .def("recv", &recv, nb::arg("data").noconvert(), nb::arg("peer"))
      .def("barrier", &barrier)
      .def("split", &split, nb::arg("color"), nb::arg("key"));

  m.def("init", &initConfig, nb::arg("rank") = nb::none(), nb::arg("world_size") = nb::none(),
        nb::arg("store") = nb::none(), nb::arg("job_id") = nb::none(), nb::arg("timeout") = nb::none());
  m.def("get_unique_id", &uniqueId);
  m.def("init_with_id", &initWithId, nb::arg("unique_id"), nb::arg("world_size"), nb::arg("rank"));
  m.def("version", [] {
    int v = 0;
    check(kumiGetVersion(&v));
    return v;
  });
}
