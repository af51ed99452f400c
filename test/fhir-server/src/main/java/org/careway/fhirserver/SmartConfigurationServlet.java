package org.careway.fhirserver;

import com.nimbusds.jose.util.JSONObjectUtils;
import jakarta.servlet.http.HttpServlet;
import jakarta.servlet.http.HttpServletRequest;
import jakarta.servlet.http.HttpServletResponse;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * Serves {@code GET /fhir/.well-known/smart-configuration}: the SMART App Launch discovery document
 * that tells a backend client where to get tokens. A secured hospital FHIR server publishes one, and
 * Careway can find its token endpoint there instead of being told {@code FHIR_TOKEN_URL}.
 *
 * <p>On only when {@code HAPI_SMART_TOKEN_URL} is set (the authorization server's token endpoint);
 * {@code HAPI_SMART_JWKS_URL}, when set, is published as {@code jwks_uri}. The document is public,
 * like {@code /metadata}.</p>
 */
public final class SmartConfigurationServlet extends HttpServlet {
	private static final long serialVersionUID = 1L;

	private final String myJson;

	SmartConfigurationServlet(String theTokenUrl, String theJwksUrl) {
		Map<String, Object> doc = new LinkedHashMap<>();
		doc.put("token_endpoint", theTokenUrl);
		if (theJwksUrl != null) {
			doc.put("jwks_uri", theJwksUrl);
		}
		doc.put("grant_types_supported", List.of("client_credentials"));
		doc.put("token_endpoint_auth_methods_supported",
				List.of("private_key_jwt", "client_secret_basic", "client_secret_post"));
		doc.put("token_endpoint_auth_signing_alg_values_supported", List.of("RS384", "ES384"));
		doc.put("scopes_supported", List.of("system/*.rs", "system/*.cruds"));
		doc.put("capabilities", List.of("client-confidential-asymmetric", "permission-v2"));
		myJson = JSONObjectUtils.toJSONString(doc);
	}

	/** The servlet the environment asks for, or null. */
	static SmartConfigurationServlet fromEnvironment() {
		String token = System.getenv("HAPI_SMART_TOKEN_URL");
		if (token == null || token.isBlank()) {
			return null;
		}
		String jwks = System.getenv("HAPI_SMART_JWKS_URL");
		return new SmartConfigurationServlet(token.trim(), jwks == null || jwks.isBlank() ? null : jwks.trim());
	}

	@Override
	protected void doGet(HttpServletRequest theRequest, HttpServletResponse theResponse) throws IOException {
		theResponse.setStatus(200);
		theResponse.setContentType("application/json");
		theResponse.setCharacterEncoding("UTF-8");
		theResponse.getOutputStream().write(myJson.getBytes(StandardCharsets.UTF_8));
	}
}
