// The warm javac of CodeCapsule's local engine (engines/_javac_server.py starts it in the sandbox and falls back to
// a cold javac; see issue #12): one JVM that stays up and compiles one job at a time with javax.tools, exactly as
// the `javac` command would (the same entry point, so the same messages).
//
// It runs inside the sandbox (bubblewrap, an unprivileged uid, seccomp, a cgroup of its own). Its working directory
// is a private directory of this server; for each job the engine copies the job's files into a fresh subdirectory
// of it and sends javac's arguments naming that subdirectory (-d, -cp and the sources), then copies the class files
// out and wipes the subdirectory. Every request gets a fresh compiler context and file manager (JavaCompiler.run):
// nothing of one job is kept for the next. Annotation processing is off (-proc:none is in the arguments the engine
// sends), so no code of the job runs in here.
//
// Protocol on stdin (requests) and stdout (answers), big-endian; nothing else is written to stdout (System.out is
// sent to stderr, and the engine starts the JVM with -XX:+DisplayVMOutputToStderr):
//   hello:   int MAGIC, once the compiler is loaded
//   request: int n, then n × (int length, UTF-8 bytes)     -- javac's arguments; n = 0 or EOF: exit
//   answer:  int exit code (-1: the compiler threw), int length + stdout bytes, int length + stderr bytes
import java.io.BufferedInputStream;
import java.io.BufferedOutputStream;
import java.io.ByteArrayOutputStream;
import java.io.DataInputStream;
import java.io.DataOutputStream;
import java.io.EOFException;
import java.io.FileDescriptor;
import java.io.FileInputStream;
import java.io.FileOutputStream;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import javax.tools.JavaCompiler;
import javax.tools.ToolProvider;

public final class JavacServer {
    private static final int MAGIC = 0x4A415643;  // "JAVC"
    private static final int MAX_ARGS = 10_000;
    private static final int MAX_ARG_BYTES = 1 << 16;

    public static void main(String[] argv) throws IOException {
        DataInputStream in = new DataInputStream(new BufferedInputStream(new FileInputStream(FileDescriptor.in)));
        DataOutputStream out = new DataOutputStream(new BufferedOutputStream(new FileOutputStream(FileDescriptor.out)));
        System.setOut(System.err);  // stdout carries the protocol only
        JavaCompiler javac = ToolProvider.getSystemJavaCompiler();
        out.writeInt(MAGIC);
        out.flush();
        while (true) {
            String[] args = readRequest(in);
            if (args == null) {
                return;
            }
            ByteArrayOutputStream stdout = new ByteArrayOutputStream();
            ByteArrayOutputStream stderr = new ByteArrayOutputStream();
            int code;
            boolean fatal = false;
            try {
                code = javac.run(null, stdout, stderr, args);
            } catch (Throwable t) {  // an Error (OutOfMemoryError, StackOverflowError) leaves this JVM suspect
                code = -1;
                fatal = true;
            }
            out.writeInt(code);
            writeBytes(out, stdout.toByteArray());
            writeBytes(out, stderr.toByteArray());
            out.flush();
            if (fatal) {
                System.exit(3);
            }
        }
    }

    private static String[] readRequest(DataInputStream in) throws IOException {
        int n;
        try {
            n = in.readInt();
        } catch (EOFException eof) {
            return null;
        }
        if (n <= 0 || n > MAX_ARGS) {
            return null;
        }
        String[] args = new String[n];
        for (int i = 0; i < n; i++) {
            int length = in.readInt();
            if (length < 0 || length > MAX_ARG_BYTES) {
                return null;
            }
            byte[] bytes = new byte[length];
            in.readFully(bytes);
            args[i] = new String(bytes, StandardCharsets.UTF_8);
        }
        return args;
    }

    private static void writeBytes(DataOutputStream out, byte[] bytes) throws IOException {
        out.writeInt(bytes.length);
        out.write(bytes);
    }
}
