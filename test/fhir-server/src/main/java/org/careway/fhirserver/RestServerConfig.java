package org.careway.fhirserver;

import ca.uhn.fhir.context.FhirContext;
import ca.uhn.fhir.context.support.IValidationSupport;
import ca.uhn.fhir.interceptor.api.IInterceptorService;
import ca.uhn.fhir.jpa.api.config.JpaStorageSettings;
import ca.uhn.fhir.jpa.api.dao.IFhirSystemDao;
import ca.uhn.fhir.jpa.dao.tx.IHapiTransactionService;
import ca.uhn.fhir.rest.server.provider.ResourceProviderFactory;
import ca.uhn.fhir.jpa.provider.IJpaSystemProvider;
import ca.uhn.fhir.jpa.provider.JpaCapabilityStatementProvider;
import ca.uhn.fhir.jpa.search.DatabaseBackedPagingProvider;
import ca.uhn.fhir.jpa.subscription.match.registry.SubscriptionRegistry;
import ca.uhn.fhir.rest.api.EncodingEnum;
import ca.uhn.fhir.rest.server.ETagSupportEnum;
import ca.uhn.fhir.rest.server.RestfulServer;
import ca.uhn.fhir.rest.server.util.ISearchParamRegistry;
import org.springframework.context.annotation.Bean;
import org.springframework.context.annotation.Configuration;

/**
 * Builds the HAPI {@link RestfulServer} servlet (mounted at /fhir/* by {@link CarewayFhirServer}).
 *
 * <p>Built as a Spring bean so all collaborators come from the JPA context; Jetty only receives the
 * finished instance.</p>
 */
@Configuration
public class RestServerConfig {

	/** Default page size when a search has no _count. */
	static final int DEFAULT_PAGE_SIZE = 20;
	/** Upper bound for _count: a client asking for _count=100000 gets 200 per page and next links. */
	static final int MAX_PAGE_SIZE = 200;

	@Bean
	public RestfulServer fhirRestfulServer(
			FhirContext theFhirContext,
			ResourceProviderFactory theResourceProviderFactory,
			IJpaSystemProvider theSystemProvider,
			DatabaseBackedPagingProvider thePagingProvider,
			IFhirSystemDao<?, ?> theSystemDao,
			JpaStorageSettings theStorageSettings,
			ISearchParamRegistry theSearchParamRegistry,
			IValidationSupport theValidationSupport,
			ConformanceCacheInvalidator theConformanceCacheInvalidator,
			SearchParameterRefresher theSearchParameterRefresher,
			SubscriptionRegistry theSubscriptionRegistry,
			IInterceptorService theJpaInterceptorService) {

		RestfulServer server = new RestfulServer(theFhirContext);

		// One provider per resource type (read/search/create/update/delete, $validate, and
		// Patient/$everything), plus the system provider that serves transaction/batch at POST [base].
		server.registerProviders(theResourceProviderFactory.createProviders());
		server.registerProvider(theSystemProvider);

		// /metadata built from the live DAOs and search-parameter registry (includes uploaded SearchParameters).
		JpaCapabilityStatementProvider capabilities = new JpaCapabilityStatementProvider(
				server, theSystemDao, theStorageSettings, theSearchParamRegistry, theValidationSupport);
		capabilities.setImplementationDescription("Careway test HAPI FHIR JPA server (R4, H2 in memory)");
		server.setServerConformanceProvider(capabilities);

		// Search results are stored in the DB and paged through by _getpages links.
		thePagingProvider.setDefaultPageSize(DEFAULT_PAGE_SIZE);
		thePagingProvider.setMaximumPageSize(MAX_PAGE_SIZE);
		server.setPagingProvider(thePagingProvider);
		server.setDefaultPageSize(DEFAULT_PAGE_SIZE);
		server.setMaximumPageSize(MAX_PAGE_SIZE);

		// JSON unless the client asks otherwise; ETags so clients can do optimistic locking (If-Match).
		server.setDefaultResponseEncoding(EncodingEnum.JSON);
		server.setETagSupport(ETagSupportEnum.ENABLED);

		// Storage-level hook (not a server hook), so it goes on the JPA interceptor service, which
		// also sees writes made inside transactions and by HAPI's own DAOs.
		theJpaInterceptorService.registerInterceptor(theConformanceCacheInvalidator);
		theJpaInterceptorService.registerInterceptor(theSearchParameterRefresher);
		// Only changes a subscription could match enter HAPI's subscription pipeline (see the class).
		SubscriptionTypeFilter subscriptionFilter =
				SubscriptionTypeFilter.fromEnvironment(theSubscriptionRegistry, theFhirContext);
		if (subscriptionFilter != null) {
			theJpaInterceptorService.registerInterceptor(subscriptionFilter);
		}

		// HAPI_REQUIRE_JWKS_URL: a secured server that refuses requests without a valid bearer JWT.
		BearerTokenInterceptor bearer = BearerTokenInterceptor.fromEnvironment();
		if (bearer != null) {
			server.registerInterceptor(bearer);
		}
		return server;
	}

	@Bean
	public ConformanceCacheInvalidator conformanceCacheInvalidator(IValidationSupport theValidationSupport) {
		return new ConformanceCacheInvalidator(theValidationSupport);
	}

	@Bean
	public SearchParameterRefresher searchParameterRefresher(
			ISearchParamRegistry theSearchParamRegistry, IHapiTransactionService theTransactionService) {
		return new SearchParameterRefresher(theSearchParamRegistry, theTransactionService);
	}
}
