package org.careway.fhirserver;

import ca.uhn.fhir.interceptor.api.Hook;
import ca.uhn.fhir.interceptor.api.Interceptor;
import ca.uhn.fhir.interceptor.api.Pointcut;
import ca.uhn.fhir.rest.api.server.RequestDetails;
import ca.uhn.fhir.rest.server.exceptions.AuthenticationException;
import com.nimbusds.jose.JOSEObjectType;
import com.nimbusds.jose.JWSAlgorithm;
import com.nimbusds.jose.jwk.source.JWKSource;
import com.nimbusds.jose.jwk.source.JWKSourceBuilder;
import com.nimbusds.jose.proc.DefaultJOSEObjectTypeVerifier;
import com.nimbusds.jose.proc.JWSVerificationKeySelector;
import com.nimbusds.jose.proc.SecurityContext;
import com.nimbusds.jwt.JWTClaimsSet;
import com.nimbusds.jwt.proc.ConfigurableJWTProcessor;
import com.nimbusds.jwt.proc.DefaultJWTClaimsVerifier;
import com.nimbusds.jwt.proc.DefaultJWTProcessor;
import jakarta.servlet.http.HttpServletRequest;
import java.net.MalformedURLException;
import java.net.URI;
import java.net.URL;
import java.util.HashSet;
import java.util.List;
import java.util.Set;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Makes the test server a secured FHIR server, as many hospitals run: every request except
 * {@code /fhir/metadata} needs {@code Authorization: Bearer <JWT>} signed by a key of the
 * authorization server's JWKS. Anything else gets 401 with an OperationOutcome and
 * {@code WWW-Authenticate: Bearer}. Careway's tests use it to exercise Careway as an OAuth client
 * (bearer, client credentials, SMART Backend Services) against a real HAPI server.
 *
 * <p>Off unless {@code HAPI_REQUIRE_JWKS_URL} is set. Optional: {@code HAPI_REQUIRE_ISSUER} (exact
 * {@code iss}), {@code HAPI_REQUIRE_AUDIENCE} (one of {@code aud}), {@code HAPI_REQUIRE_CLOCK_SKEW_S}
 * (leeway on {@code exp}/{@code nbf}, default 0: a test can watch a token expire to the second).</p>
 *
 * <p>The JWKS is fetched for every request, without a cache: a key rotated at the authorization
 * server is refused at once, so a test can make the server reject a token the client still holds
 * (a real server caches the JWKS for minutes; a client that refreshes on 401 copes with both). On
 * loopback that costs about a millisecond. Verification uses nimbus-jose-jwt.</p>
 */
@Interceptor
public final class BearerTokenInterceptor {
	private static final Logger ourLog = LoggerFactory.getLogger(BearerTokenInterceptor.class);

	/** Signature algorithms accepted on access tokens (RFC 9068 recommends asymmetric ones). */
	private static final Set<JWSAlgorithm> ALGORITHMS = Set.of(
			JWSAlgorithm.RS256, JWSAlgorithm.RS384, JWSAlgorithm.RS512,
			JWSAlgorithm.PS256, JWSAlgorithm.PS384,
			JWSAlgorithm.ES256, JWSAlgorithm.ES384);

	private final ConfigurableJWTProcessor<SecurityContext> myProcessor;

	BearerTokenInterceptor(URL theJwksUrl, String theIssuer, String theAudience, int theClockSkewSeconds) {
		JWKSource<SecurityContext> keys = JWKSourceBuilder.<SecurityContext>create(theJwksUrl)
				.cache(false)
				.refreshAheadCache(false)
				.rateLimited(false)
				.retrying(false)
				.build();
		DefaultJWTProcessor<SecurityContext> processor = new DefaultJWTProcessor<>();
		processor.setJWSKeySelector(new JWSVerificationKeySelector<>(ALGORITHMS, keys));
		// RFC 9068 access tokens are typed "at+jwt"; plain JWTs (or no typ) are accepted too.
		processor.setJWSTypeVerifier(new DefaultJOSEObjectTypeVerifier<>(
				new JOSEObjectType("at+jwt"), JOSEObjectType.JWT, null));
		JWTClaimsSet.Builder exact = new JWTClaimsSet.Builder();
		if (theIssuer != null) {
			exact.issuer(theIssuer);
		}
		// HashSet, not Set.of: the verifier asks the audience set whether it contains null, which
		// Set.of answers with a NullPointerException.
		DefaultJWTClaimsVerifier<SecurityContext> claims = new DefaultJWTClaimsVerifier<>(
				theAudience == null ? null : new HashSet<>(List.of(theAudience)), exact.build(),
				new HashSet<>(List.of("exp")), null);
		claims.setMaxClockSkew(theClockSkewSeconds);
		processor.setJWTClaimsSetVerifier(claims);
		myProcessor = processor;
	}

	/** The interceptor the environment asks for, or null when the server is to stay open. */
	static BearerTokenInterceptor fromEnvironment() {
		String jwks = blankToNull(System.getenv("HAPI_REQUIRE_JWKS_URL"));
		if (jwks == null) {
			return null;
		}
		URL url;
		try {
			url = URI.create(jwks).toURL();
		} catch (IllegalArgumentException | MalformedURLException e) {
			throw new IllegalArgumentException("HAPI_REQUIRE_JWKS_URL is not a URL: " + jwks, e);
		}
		String issuer = blankToNull(System.getenv("HAPI_REQUIRE_ISSUER"));
		String audience = blankToNull(System.getenv("HAPI_REQUIRE_AUDIENCE"));
		String skew = blankToNull(System.getenv("HAPI_REQUIRE_CLOCK_SKEW_S"));
		int skewSeconds = skew == null ? 0 : Integer.parseInt(skew);
		ourLog.info("Bearer JWTs required (JWKS {}, issuer {}, audience {}, clock skew {} s)",
				jwks, issuer == null ? "any" : issuer, audience == null ? "any" : audience, skewSeconds);
		return new BearerTokenInterceptor(url, issuer, audience, skewSeconds);
	}

	/**
	 * Runs once the request is parsed, before any resource method: a refused request never reaches
	 * the database. HAPI turns the exception into 401 with an OperationOutcome.
	 */
	@Hook(Pointcut.SERVER_INCOMING_REQUEST_POST_PROCESSED)
	public boolean authenticate(RequestDetails theRequestDetails, HttpServletRequest theRequest) {
		if ("metadata".equals(theRequestDetails.getRequestPath())) {
			return true; // the CapabilityStatement stays public, as SMART expects
		}
		String header = theRequest.getHeader("Authorization");
		if (header == null || !header.regionMatches(true, 0, "Bearer ", 0, 7)) {
			throw refused("invalid_request", "A bearer token is required");
		}
		try {
			myProcessor.process(header.substring(7).trim(), null);
		} catch (Exception e) {
			// The reason names the failed check ("Expired JWT", "no matching key"), never the token.
			throw refused("invalid_token", "The bearer token was refused: " + e.getMessage());
		}
		return true;
	}

	private static AuthenticationException refused(String theError, String theMessage) {
		AuthenticationException e = new AuthenticationException(theMessage);
		e.addResponseHeader("WWW-Authenticate", "Bearer error=\"" + theError + "\"");
		return e;
	}

	private static String blankToNull(String theValue) {
		return theValue == null || theValue.isBlank() ? null : theValue.trim();
	}
}
