package org.careway.fhirserver;

import ca.uhn.fhir.rest.server.RestfulServer;
import org.eclipse.jetty.ee10.servlet.ServletContextHandler;
import org.eclipse.jetty.ee10.servlet.ServletHolder;
import org.eclipse.jetty.server.Server;
import org.eclipse.jetty.server.ServerConnector;
import org.eclipse.jetty.server.handler.GracefulHandler;
import org.eclipse.jetty.util.thread.QueuedThreadPool;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;
import org.springframework.context.annotation.AnnotationConfigApplicationContext;

/**
 * Entry point: starts HAPI FHIR JPA (R4, in-memory H2) on http://127.0.0.1:PORT/fhir.
 *
 * <p>Plain Spring + embedded Jetty 12 instead of Spring Boot: HAPI's configuration classes are
 * plain {@code @Configuration}s, so Boot's auto-configuration would only add things to exclude
 * (Elasticsearch, Thymeleaf, Flyway, circular-reference settings).</p>
 *
 * <p>Port: first argument, else env {@code HAPI_PORT}, else 8090. Binds to 127.0.0.1 unless
 * {@code HAPI_HOST} names another address: for tests and the demo it stays on loopback; the container
 * image (Dockerfile beside pom.xml) sets 0.0.0.0, where a network policy lets only Careway in. No
 * authentication unless {@code HAPI_REQUIRE_JWKS_URL} asks for bearer tokens
 * ({@link BearerTokenInterceptor}).</p>
 */
public final class CarewayFhirServer {
	private static final Logger ourLog = LoggerFactory.getLogger(CarewayFhirServer.class);
	private static final int DEFAULT_PORT = 8090;
	private static final String HOST = hostFromEnvironment();
	/** How long SIGTERM waits for in-flight requests before Jetty stops anyway. */
	private static final long STOP_TIMEOUT_MS = 10_000;

	private CarewayFhirServer() {}

	public static void main(String[] args) throws Exception {
		long t0 = System.nanoTime();
		int port = resolvePort(args);

		// 1. Spring/HAPI first (the slow part), so the HTTP port only opens once everything is
		//    wired: /fhir/metadata answering 200 then really means "ready".
		AnnotationConfigApplicationContext spring = new AnnotationConfigApplicationContext();
		spring.register(JpaServerConfig.class);
		spring.refresh();
		RestfulServer restfulServer = spring.getBean(RestfulServer.class);

		// 2. Jetty on loopback only.
		QueuedThreadPool threads = new QueuedThreadPool(50, 4);
		threads.setName("fhir-http");
		Server jetty = new Server(threads);
		ServerConnector connector = new ServerConnector(jetty);
		connector.setHost(HOST);
		connector.setPort(port);
		jetty.addConnector(connector);

		ServletContextHandler context = new ServletContextHandler(ServletContextHandler.NO_SESSIONS);
		context.setContextPath("/");
		ServletHolder holder = new ServletHolder("fhir", restfulServer);
		holder.setInitOrder(1); // init RestfulServer (scan providers) at start, not on first request
		context.addServlet(holder, "/fhir/*");
		// HAPI_SMART_TOKEN_URL: SMART discovery beside the FHIR base (an exact mapping wins over /fhir/*).
		SmartConfigurationServlet smart = SmartConfigurationServlet.fromEnvironment();
		if (smart != null) {
			context.addServlet(new ServletHolder("smart-configuration", smart), "/fhir/.well-known/smart-configuration");
		}

		// GracefulHandler lets stop() finish in-flight requests (rejecting new ones) within the timeout.
		GracefulHandler graceful = new GracefulHandler(context);
		jetty.setHandler(graceful);
		jetty.setStopTimeout(STOP_TIMEOUT_MS);
		jetty.setStopAtShutdown(false); // we order the shutdown ourselves, below

		// 3. SIGTERM/SIGINT: stop HTTP first (drain requests), then close Spring (schedulers,
		//    subscription delivery threads, the H2 pool) so nothing touches a closed database.
		Runtime.getRuntime().addShutdownHook(new Thread(() -> {
			ourLog.info("Shutting down Careway FHIR server");
			try {
				jetty.stop();
			} catch (Exception e) {
				ourLog.warn("Jetty stop failed", e);
			}
			spring.close();
			ourLog.info("Stopped");
		}, "fhir-shutdown"));

		try {
			jetty.start();
		} catch (Exception e) {
			// e.g. port already in use: fail fast with a clear exit code instead of hanging.
			ourLog.error("Could not start HTTP server on {}:{}", HOST, port, e);
			System.exit(2);
		}
		long ms = (System.nanoTime() - t0) / 1_000_000;
		ourLog.info("Careway FHIR server ready at http://{}:{}/fhir (started in {} ms)", HOST, port, ms);
		jetty.join();
	}

	static String hostFromEnvironment() {
		String host = System.getenv("HAPI_HOST");
		return host == null || host.isBlank() ? "127.0.0.1" : host.trim();
	}

	static int resolvePort(String[] args) {
		String raw = args.length > 0 ? args[0] : System.getenv("HAPI_PORT");
		if (raw == null || raw.isBlank()) {
			return DEFAULT_PORT;
		}
		try {
			int port = Integer.parseInt(raw.trim());
			if (port < 1 || port > 65535) {
				throw new NumberFormatException();
			}
			return port;
		} catch (NumberFormatException e) {
			throw new IllegalArgumentException("Invalid port: " + raw);
		}
	}
}
