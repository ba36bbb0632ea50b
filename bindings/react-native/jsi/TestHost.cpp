// Test fixtures for the Hermes-JSI route (run-jsi-tests.sh), as a second extension that ubrn's
// test-runner loads next to the module under test. Hermes has no Node APIs; the N-API suite's
// tests need a few (start a fleet process, make a temporary directory, write a file to upload,
// count this process' open descriptors and threads). This installs them as
// `globalThis.__testHost`, implemented with POSIX calls. Test-only: it is not part of the package
// and the module under test (librn-robust_api.so: the generated JSI host object + the Rust library)
// does not use it.
#include <ReactCommon/CallInvoker.h>
#include <jsi/jsi.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <string>
#include <vector>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

namespace jsi = facebook::jsi;

namespace {

// How many runtimes registerNatives has seen in this process (ubrn's test-runner runs the script
// twice, each time in a fresh runtime).
int g_runs = 0;

struct Child {
  int stdinFd;
  int stdoutFd;
};
std::map<pid_t, Child> g_children;

[[noreturn]] void fail(jsi::Runtime &rt, const std::string &what) {
  throw jsi::JSError(rt, what + (errno ? std::string(": ") + std::strerror(errno) : std::string()));
}

std::string str(jsi::Runtime &rt, const jsi::Value *args, size_t count, size_t i) {
  if (i >= count || !args[i].isString()) throw jsi::JSError(rt, "expected a string argument");
  return args[i].asString(rt).utf8(rt);
}

size_t countEntries(const char *dir) {
  size_t n = 0;
  std::error_code ec;
  for (auto it = std::filesystem::directory_iterator(dir, ec); !ec && it != std::filesystem::directory_iterator();
       it.increment(ec))
    n++;
  return n;
}

// Starts argv (stdin and stdout piped, stderr inherited) and returns {pid, line}: the first line
// it prints, waiting at most timeoutMs. The pipes are close-on-exec, so one child never holds
// another's stdin open.
jsi::Value spawnWithLine(jsi::Runtime &rt, const std::vector<std::string> &argv, int timeoutMs) {
  int in[2], out[2];
  errno = 0;
  if (pipe2(in, O_CLOEXEC) != 0 || pipe2(out, O_CLOEXEC) != 0) fail(rt, "pipe2");
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, in[0], 0);
  posix_spawn_file_actions_adddup2(&actions, out[1], 1);
  std::vector<char *> cargv;
  for (const auto &a : argv) cargv.push_back(const_cast<char *>(a.c_str()));
  cargv.push_back(nullptr);
  pid_t pid = 0;
  int rc = posix_spawn(&pid, cargv[0], &actions, nullptr, cargv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  close(in[0]);
  close(out[1]);
  if (rc != 0) {
    close(in[1]);
    close(out[0]);
    errno = rc;
    fail(rt, "posix_spawn " + argv[0]);
  }
  std::string line;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeoutMs);
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) break;
    pollfd p{out[0], POLLIN, 0};
    if (poll(&p, 1, (int)left.count()) <= 0) break;
    char c;
    ssize_t n = read(out[0], &c, 1);
    if (n <= 0 || c == '\n') break;
    line.push_back(c);
  }
  g_children[pid] = Child{in[1], out[0]};
  jsi::Object result(rt);
  result.setProperty(rt, "pid", (double)pid);
  result.setProperty(rt, "line", jsi::String::createFromUtf8(rt, line));
  return result;
}

// Closes the child's stdin (the fleet exits on EOF) and waits for it; SIGKILL after timeoutMs.
// `signal` > 0 sends that signal first instead (a backend process killed).
int closeChild(pid_t pid, int sig, int timeoutMs) {
  auto it = g_children.find(pid);
  if (it == g_children.end()) return -1;
  if (sig > 0) kill(pid, sig);
  close(it->second.stdinFd);
  int status = 0;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeoutMs);
  for (;;) {
    pid_t r = waitpid(pid, &status, WNOHANG);
    if (r == pid || r < 0) break;
    if (std::chrono::steady_clock::now() >= deadline) {
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      break;
    }
    usleep(5000);
  }
  close(it->second.stdoutFd);
  g_children.erase(it);
  return status;
}

void install(jsi::Runtime &rt) {
  jsi::Object host(rt);
  auto fn = [&](const char *name, size_t argc, jsi::HostFunctionType f) {
    host.setProperty(rt, name,
                     jsi::Function::createFromHostFunction(rt, jsi::PropNameID::forAscii(rt, name), argc, std::move(f)));
  };
  host.setProperty(rt, "run", (double)g_runs);
  host.setProperty(rt, "pid", (double)getpid());
  fn("getenv", 1, [](jsi::Runtime &rt, const jsi::Value &, const jsi::Value *args, size_t count) -> jsi::Value {
    const char *v = std::getenv(str(rt, args, count, 0).c_str());
    return v ? jsi::Value(jsi::String::createFromUtf8(rt, v)) : jsi::Value::undefined();
  });
  fn("mkdtemp", 1, [](jsi::Runtime &rt, const jsi::Value &, const jsi::Value *args, size_t count) -> jsi::Value {
    std::string tmpl = str(rt, args, count, 0) + "XXXXXX";
    errno = 0;
    if (!mkdtemp(tmpl.data())) fail(rt, "mkdtemp " + tmpl);
    return jsi::String::createFromUtf8(rt, tmpl);
  });
  fn("rm", 1, [](jsi::Runtime &rt, const jsi::Value &, const jsi::Value *args, size_t count) -> jsi::Value {
    std::error_code ec;
    std::filesystem::remove_all(str(rt, args, count, 0), ec);
    return jsi::Value::undefined();
  });
  fn("exists", 1, [](jsi::Runtime &rt, const jsi::Value &, const jsi::Value *args, size_t count) -> jsi::Value {
    std::error_code ec;
    return std::filesystem::exists(str(rt, args, count, 0), ec);
  });
  fn("mkdir", 1, [](jsi::Runtime &rt, const jsi::Value &, const jsi::Value *args, size_t count) -> jsi::Value {
    std::error_code ec;
    std::filesystem::create_directories(str(rt, args, count, 0), ec);
    if (ec) throw jsi::JSError(rt, "mkdir: " + ec.message());
    return jsi::Value::undefined();
  });
  // writeFile(path, data): data is a string (written as UTF-8) or an ArrayBuffer.
  fn("writeFile", 2, [](jsi::Runtime &rt, const jsi::Value &, const jsi::Value *args, size_t count) -> jsi::Value {
    std::string path = str(rt, args, count, 0);
    std::ofstream f(path, std::ios::binary | std::ios::trunc);
    if (!f) throw jsi::JSError(rt, "cannot write " + path);
    if (count > 1 && args[1].isString()) {
      std::string s = args[1].asString(rt).utf8(rt);
      f.write(s.data(), (std::streamsize)s.size());
    } else if (count > 1 && args[1].isObject() && args[1].asObject(rt).isArrayBuffer(rt)) {
      auto buf = args[1].asObject(rt).getArrayBuffer(rt);
      f.write(reinterpret_cast<const char *>(buf.data(rt)), (std::streamsize)buf.size(rt));
    } else {
      throw jsi::JSError(rt, "writeFile: data must be a string or an ArrayBuffer");
    }
    if (!f.good()) throw jsi::JSError(rt, "write failed: " + path);
    return jsi::Value::undefined();
  });
  // readFile(path, asText): the file's text (UTF-8) or its bytes as an ArrayBuffer.
  fn("readFile", 2, [](jsi::Runtime &rt, const jsi::Value &, const jsi::Value *args, size_t count) -> jsi::Value {
    std::string path = str(rt, args, count, 0);
    std::ifstream f(path, std::ios::binary);
    if (!f) throw jsi::JSError(rt, "cannot read " + path);
    std::string data((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    if (count > 1 && args[1].isBool() && args[1].getBool()) return jsi::String::createFromUtf8(rt, data);
    // An ArrayBuffer made by the runtime's own constructor, then filled.
    jsi::Object buffer =
        rt.global().getPropertyAsFunction(rt, "ArrayBuffer").callAsConstructor(rt, (double)data.size()).getObject(rt);
    std::memcpy(buffer.getArrayBuffer(rt).data(rt), data.data(), data.size());
    return buffer;
  });
  fn("fileSize", 1, [](jsi::Runtime &rt, const jsi::Value &, const jsi::Value *args, size_t count) -> jsi::Value {
    std::error_code ec;
    auto n = std::filesystem::file_size(str(rt, args, count, 0), ec);
    return ec ? jsi::Value(-1) : jsi::Value((double)n);
  });
  fn("readdir", 1, [](jsi::Runtime &rt, const jsi::Value &, const jsi::Value *args, size_t count) -> jsi::Value {
    std::vector<std::string> names;
    std::error_code ec;
    for (auto it = std::filesystem::directory_iterator(str(rt, args, count, 0), ec);
         !ec && it != std::filesystem::directory_iterator(); it.increment(ec))
      names.push_back(it->path().filename().string());
    if (ec) throw jsi::JSError(rt, "readdir: " + ec.message());
    jsi::Array out(rt, names.size());
    for (size_t i = 0; i < names.size(); i++) out.setValueAtIndex(rt, i, jsi::String::createFromUtf8(rt, names[i]));
    return out;
  });
  // This process' open file descriptors and threads (the leak checks).
  fn("openFds", 0, [](jsi::Runtime &, const jsi::Value &, const jsi::Value *, size_t) -> jsi::Value {
    return (double)countEntries("/proc/self/fd");
  });
  fn("threads", 0, [](jsi::Runtime &, const jsi::Value &, const jsi::Value *, size_t) -> jsi::Value {
    return (double)countEntries("/proc/self/task");
  });
  // spawn(argv: string[], timeoutMs): {pid, line}
  fn("spawn", 2, [](jsi::Runtime &rt, const jsi::Value &, const jsi::Value *args, size_t count) -> jsi::Value {
    if (count < 1 || !args[0].isObject() || !args[0].asObject(rt).isArray(rt)) throw jsi::JSError(rt, "spawn(argv[])");
    auto arr = args[0].asObject(rt).asArray(rt);
    std::vector<std::string> argv;
    for (size_t i = 0; i < arr.size(rt); i++) argv.push_back(arr.getValueAtIndex(rt, i).asString(rt).utf8(rt));
    if (argv.empty()) throw jsi::JSError(rt, "spawn: empty argv");
    int timeout = count > 1 && args[1].isNumber() ? (int)args[1].asNumber() : 15000;
    return spawnWithLine(rt, argv, timeout);
  });
  // close(pid, signal = 0): EOF on its stdin (or the signal), then waits; returns the wait status.
  fn("close", 2, [](jsi::Runtime &rt, const jsi::Value &, const jsi::Value *args, size_t count) -> jsi::Value {
    if (count < 1 || !args[0].isNumber()) throw jsi::JSError(rt, "close(pid)");
    int sig = count > 1 && args[1].isNumber() ? (int)args[1].asNumber() : 0;
    return (double)closeChild((pid_t)args[0].asNumber(), sig, 5000);
  });
  rt.global().setProperty(rt, "__testHost", host);
}

}  // namespace

extern "C" void registerNatives(jsi::Runtime &rt, std::shared_ptr<facebook::react::CallInvoker>) {
  g_runs++;
  install(rt);
}
