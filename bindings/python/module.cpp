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
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace nb = nanobind;
using namespace nb::literals;

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

// Arrays in host memory (the buffer protocol, DLPack on the CPU) or in CUDA memory (DLPack on a
// GPU, or __cuda_array_interface__, which nanobind does not read: CuPy, Numba, torch).
using Array = nb::ndarray<>;

kumiDataType_t dataTypeOf(const nb::dlpack::dtype t, const char* what) {
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

// Collectives read and write whole buffers: a strided view would silently leave gaps. Strides
// in elements; empty means C order.
void requireContiguous(const std::vector<std::int64_t>& shape, const std::vector<std::int64_t>& strides,
                       const char* what) {
  std::int64_t expected = 1;
  for (std::size_t d = shape.size(); d-- > 0 && !strides.empty();) {
    if (shape[d] != 1 && strides[d] != expected)
      throw KumiFailure{kumiInvalidArgument, std::string(what) + ": the array is not contiguous (make a copy with "
                                                                 "numpy.ascontiguousarray or tensor.contiguous())"};
    expected *= shape[d];
  }
}

// A buffer handed to kumi: where, how many elements of which type, and whether it lives on a GPU.
struct View {
  void* data = nullptr;
  std::size_t count = 0;
  kumiDataType_t type = kumiFloat32;
  bool device = false;
  bool readOnly = false;
  std::optional<std::uintptr_t> stream;  // the producer's stream, from __cuda_array_interface__
  std::optional<Array> keep;              // a DLPack import stays open while kumi uses the memory
};

// CUDA's handles for the default streams (cudaStreamLegacy, cudaStreamPerThread): kumi reads a
// NULL stream with host buffers as "no stream", so device buffers always travel with a handle.
constexpr std::uintptr_t kLegacyStream = 1;

kumiDataType_t typeOfTypestr(const std::string& t, const char* what) {
  // "<f4", "|u1": byte order, kind, size. CUDA devices are little-endian.
  if (t.size() >= 3 && (t[0] == '<' || t[0] == '|' || t[0] == '=')) {
    nb::dlpack::dtype d{};
    d.lanes = 1;
    const int bytes = std::atoi(t.c_str() + 2);
    d.bits = static_cast<std::uint8_t>(bytes * 8);
    using Code = nb::dlpack::dtype_code;
    if (t[1] == 'i') d.code = static_cast<std::uint8_t>(Code::Int);
    else if (t[1] == 'u') d.code = static_cast<std::uint8_t>(Code::UInt);
    else if (t[1] == 'f') d.code = static_cast<std::uint8_t>(Code::Float);
    else d.code = 255;
    if (d.code != 255 && bytes > 0 && bytes <= 8) return dataTypeOf(d, what);
  }
  throw KumiFailure{kumiInvalidArgument, std::string(what) + ": __cuda_array_interface__ typestr '" + t +
                                             "' is not a type kumi handles (little-endian int8, uint8, int32, "
                                             "uint32, int64, uint64, float16, float32, float64)"};
}

// __cuda_array_interface__ (versions 2 and 3): a dict with shape, typestr, data=(pointer,
// read-only), strides in bytes or None, mask (unsupported), stream (v3, the producer's).
View viewOfInterface(nb::handle iface, const char* what) {
  if (!nb::isinstance<nb::dict>(iface))
    throw KumiFailure{kumiInvalidArgument, std::string(what) + ": __cuda_array_interface__ is not a dict"};
  nb::dict d = nb::borrow<nb::dict>(iface);
  auto field = [&](const char* key) -> nb::object {
    if (!d.contains(key))
      throw KumiFailure{kumiInvalidArgument,
                        std::string(what) + ": __cuda_array_interface__ has no '" + key + "' entry"};
    return d[key];
  };
  View v;
  v.device = true;
  try {
    const nb::tuple data = nb::cast<nb::tuple>(field("data"));
    v.data = reinterpret_cast<void*>(nb::cast<std::uintptr_t>(data[0]));
    v.readOnly = nb::cast<bool>(data[1]);
    v.type = typeOfTypestr(nb::cast<std::string>(field("typestr")), what);
    std::vector<std::int64_t> shape, strides;
    for (nb::handle n : nb::cast<nb::tuple>(field("shape"))) shape.push_back(nb::cast<std::int64_t>(n));
    if (d.contains("strides") && !d["strides"].is_none()) {
      const std::int64_t size = static_cast<std::int64_t>(kumiTypeSize(v.type));
      for (nb::handle s : nb::cast<nb::tuple>(d["strides"])) {
        const std::int64_t bytes = nb::cast<std::int64_t>(s);
        if (bytes % size != 0)
          throw KumiFailure{kumiInvalidArgument, std::string(what) + ": the array is not contiguous (a stride of " +
                                                     std::to_string(bytes) + " bytes)"};
        strides.push_back(bytes / size);
      }
      if (strides.size() != shape.size())
        throw KumiFailure{kumiInvalidArgument, std::string(what) + ": __cuda_array_interface__ has " +
                                                   std::to_string(strides.size()) + " strides for " +
                                                   std::to_string(shape.size()) + " dimensions"};
    }
    if (d.contains("mask") && !d["mask"].is_none())
      throw KumiFailure{kumiInvalidArgument, std::string(what) + ": masked arrays are not supported"};
    requireContiguous(shape, strides, what);
    v.count = 1;
    for (std::int64_t n : shape) {
      if (n < 0) throw KumiFailure{kumiInvalidArgument, std::string(what) + ": negative dimension in the shape"};
      v.count *= static_cast<std::size_t>(n);
    }
    if (d.contains("stream") && !d["stream"].is_none()) v.stream = nb::cast<std::uintptr_t>(d["stream"]);
  } catch (const nb::cast_error&) {
    throw KumiFailure{kumiInvalidArgument,
                      std::string(what) + ": __cuda_array_interface__ has an entry of the wrong type"};
  }
  return v;
}

View viewOf(nb::handle obj, const char* what, bool written) {
  View v;
  Array a;
  if (nb::try_cast<Array>(obj, a, /*convert=*/false)) {
    const std::int32_t dev = a.device_type();
    if (dev != nb::device::cpu::value && dev != nb::device::cuda::value && dev != nb::device::cuda_host::value)
      throw KumiFailure{kumiInvalidArgument, std::string(what) + ": the array lives on a device of DLPack type " +
                                                 std::to_string(dev) +
                                                 "; kumi takes host memory and CUDA device memory"};
    std::vector<std::int64_t> shape, strides;
    for (std::size_t d = 0; d < a.ndim(); ++d) {
      shape.push_back(static_cast<std::int64_t>(a.shape(d)));
      strides.push_back(a.stride(d));
    }
    requireContiguous(shape, strides, what);
    v.data = a.data();
    v.count = a.size();
    v.type = dataTypeOf(a.dtype(), what);
    v.device = dev == nb::device::cuda::value;
    v.keep = std::move(a);
  } else if (PyObject* iface = PyObject_GetAttrString(obj.ptr(), "__cuda_array_interface__")) {
    // Only after DLPack: torch raises a formatted error for CPU tensors here, which costs
    // microseconds on every call.
    v = viewOfInterface(nb::steal(iface), what);
  } else {
    PyErr_Clear();
    throw KumiFailure{kumiInvalidArgument, std::string(what) + ": expected an array (buffer protocol, DLPack or "
                                                               "__cuda_array_interface__), got " +
                                               nb::cast<std::string>(nb::str(obj.type()))};
  }
  if (written && v.readOnly) throw KumiFailure{kumiInvalidArgument, std::string(what) + ": the array is read-only"};
  return v;
}

// The stream a call goes on: the caller's, else the producer's (__cuda_array_interface__),
// else the legacy default stream for device buffers and none for host buffers.
kumiStream_t streamFor(std::optional<std::uintptr_t> given, const View& a, const View* b = nullptr) {
  const bool device = a.device || (b != nullptr && b->device);
  std::optional<std::uintptr_t> s = given;
  if (!s) s = a.stream ? a.stream : (b != nullptr ? b->stream : std::nullopt);
  if (!s) return device ? reinterpret_cast<kumiStream_t>(kLegacyStream) : nullptr;
  if (*s == 0 && device) return reinterpret_cast<kumiStream_t>(kLegacyStream);  // torch's default stream is 0
  return reinterpret_cast<kumiStream_t>(*s);
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

using Stream = std::optional<std::uintptr_t>;

void allReduce(Communicator& c, nb::handle send, nb::handle recv, int op, Stream stream) {
  View s = viewOf(send, "all_reduce input", false), r = viewOf(recv, "all_reduce output", true);
  sameType(s, r, "all_reduce");
  if (s.count != r.count)
    throw KumiFailure{kumiInvalidArgument, "all_reduce: input has " + std::to_string(s.count) + " elements, output " +
                                               std::to_string(r.count)};
  const kumiRedOp_t o = opOf(op);
  kumiComm_t h = c.handle();
  kumiStream_t st = streamFor(stream, s, &r);
  blocking([&] { return kumiAllReduce(s.data, r.data, s.count, s.type, o, h, st); });
}

void reduce(Communicator& c, nb::handle send, nb::handle recv, int root, int op, Stream stream) {
  View s = viewOf(send, "reduce input", false), r = viewOf(recv, "reduce output", true);
  sameType(s, r, "reduce");
  if (s.count != r.count)
    throw KumiFailure{kumiInvalidArgument, "reduce: input has " + std::to_string(s.count) + " elements, output " +
                                               std::to_string(r.count)};
  const kumiRedOp_t o = opOf(op);
  kumiComm_t h = c.handle();
  kumiStream_t st = streamFor(stream, s, &r);
  blocking([&] { return kumiReduce(s.data, r.data, s.count, s.type, o, root, h, st); });
}

void broadcast(Communicator& c, nb::handle send, nb::handle recv, int root, Stream stream) {
  View s = viewOf(send, "broadcast input", false), r = viewOf(recv, "broadcast output", true);
  sameType(s, r, "broadcast");
  if (s.count != r.count)
    throw KumiFailure{kumiInvalidArgument, "broadcast: input has " + std::to_string(s.count) + " elements, output " +
                                               std::to_string(r.count)};
  kumiComm_t h = c.handle();
  kumiStream_t st = streamFor(stream, s, &r);
  blocking([&] { return kumiBroadcast(s.data, r.data, s.count, s.type, root, h, st); });
}

void reduceScatter(Communicator& c, nb::handle send, nb::handle recv, int op, Stream stream) {
  View s = viewOf(send, "reduce_scatter input", false), r = viewOf(recv, "reduce_scatter output", true);
  sameType(s, r, "reduce_scatter");
  const std::size_t n = static_cast<std::size_t>(c.size());
  if (s.count != r.count * n)
    throw KumiFailure{kumiInvalidArgument, "reduce_scatter: input has " + std::to_string(s.count) +
                                               " elements, expected output size x world size = " +
                                               std::to_string(r.count) + " x " + std::to_string(n)};
  const kumiRedOp_t o = opOf(op);
  kumiComm_t h = c.handle();
  kumiStream_t st = streamFor(stream, s, &r);
  blocking([&] { return kumiReduceScatter(s.data, r.data, r.count, s.type, o, h, st); });
}

void allGather(Communicator& c, nb::handle send, nb::handle recv, Stream stream) {
  View s = viewOf(send, "all_gather input", false), r = viewOf(recv, "all_gather output", true);
  sameType(s, r, "all_gather");
  const std::size_t n = static_cast<std::size_t>(c.size());
  if (r.count != s.count * n)
    throw KumiFailure{kumiInvalidArgument, "all_gather: output has " + std::to_string(r.count) +
                                               " elements, expected input size x world size = " +
                                               std::to_string(s.count) + " x " + std::to_string(n)};
  kumiComm_t h = c.handle();
  kumiStream_t st = streamFor(stream, s, &r);
  blocking([&] { return kumiAllGather(s.data, r.data, s.count, s.type, h, st); });
}

void allToAll(Communicator& c, nb::handle send, nb::handle recv, Stream stream) {
  View s = viewOf(send, "all_to_all input", false), r = viewOf(recv, "all_to_all output", true);
  sameType(s, r, "all_to_all");
  const std::size_t n = static_cast<std::size_t>(c.size());
  if (s.count != r.count || s.count % n != 0)
    throw KumiFailure{kumiInvalidArgument, "all_to_all: input and output need the same number of elements, a multiple "
                                           "of the world size " + std::to_string(n) + "; got " +
                                               std::to_string(s.count) + " and " + std::to_string(r.count)};
  kumiComm_t h = c.handle();
  kumiStream_t st = streamFor(stream, s, &r);
  blocking([&] { return kumiAllToAll(s.data, r.data, s.count / n, s.type, h, st); });
}

void send(Communicator& c, nb::handle data, int peer, Stream stream) {
  View v = viewOf(data, "send", false);
  kumiComm_t h = c.handle();
  kumiStream_t st = streamFor(stream, v);
  blocking([&] { return kumiSend(v.data, v.count, v.type, peer, h, st); });
}

void recv(Communicator& c, nb::handle data, int peer, Stream stream) {
  View v = viewOf(data, "recv", true);
  kumiComm_t h = c.handle();
  kumiStream_t st = streamFor(stream, v);
  blocking([&] { return kumiRecv(v.data, v.count, v.type, peer, h, st); });
}

void barrier(Communicator& c, Stream stream) {
  kumiComm_t h = c.handle();
  kumiStream_t st = stream ? reinterpret_cast<kumiStream_t>(*stream == 0 ? kLegacyStream : *stream) : nullptr;
  blocking([&] { return kumiBarrier(h, st); });
}

// The failure that a call on device buffers met after it had returned, or None.
nb::object asyncError(Communicator& c) {
  kumiResult_t code = kumiSuccess;
  check(kumiCommGetAsyncError(c.handle(), &code));
  if (code == kumiSuccess) return nb::none();
  const auto i = static_cast<std::size_t>(code);
  PyObject* cls = i < errorClasses.size() && errorClasses[i] ? errorClasses[i] : errorClasses[0];
  return nb::borrow(cls)(nb::str(kumiGetLastError()));
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
      .def("all_reduce", &allReduce, "send"_a, "recv"_a, "op"_a, "stream"_a = nb::none())
      .def("reduce", &reduce, "send"_a, "recv"_a, "root"_a, "op"_a, "stream"_a = nb::none())
      .def("broadcast", &broadcast, "send"_a, "recv"_a, "root"_a, "stream"_a = nb::none())
      .def("reduce_scatter", &reduceScatter, "send"_a, "recv"_a, "op"_a, "stream"_a = nb::none())
      .def("all_gather", &allGather, "send"_a, "recv"_a, "stream"_a = nb::none())
      .def("all_to_all", &allToAll, "send"_a, "recv"_a, "stream"_a = nb::none())
      .def("send", &send, "data"_a, "peer"_a, "stream"_a = nb::none())
      .def("recv", &recv, "data"_a, "peer"_a, "stream"_a = nb::none())
      .def("barrier", &barrier, "stream"_a = nb::none())
      .def("async_error", &asyncError)
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
